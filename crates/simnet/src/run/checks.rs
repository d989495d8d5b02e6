//! Deciding the expectations: each check evaluated against the run as it stands.

use super::*;

impl<T: Transport> Sim<'_, T> {
    pub(super) fn check_expectations(&mut self, at_end: bool) {
        let now = self.now();
        for i in 0..self.scenario.expect.len() {
            if !matches!(self.verdicts[i], Verdict::Pending) {
                continue;
            }
            match &self.scenario.expect[i] {
                Expect::Eventually { within, check } => match self.check(check) {
                    Ok(()) => {
                        self.verdicts[i] = Verdict::Held(now);
                        let text = expect_text(&self.scenario.expect[i]);
                        self.log(format!("{text} held"));
                    }
                    Err(why) if now >= Time::ZERO + within.0 || at_end => {
                        let text = expect_text(&self.scenario.expect[i]);
                        self.log(format!("{text} failed: {why}"));
                        self.verdicts[i] = Verdict::Failed(now, why);
                    }
                    Err(why) => self.last_reason[i] = why,
                },
                Expect::Always(check) => {
                    if let Err(why) = self.check(check) {
                        let text = expect_text(&self.scenario.expect[i]);
                        self.log(format!("{text} failed: {why}"));
                        self.verdicts[i] = Verdict::Failed(now, why);
                    } else if at_end {
                        self.verdicts[i] = Verdict::Held(now);
                    }
                }
            }
        }
    }

    pub(super) fn file_hash(&mut self, peer: usize, name: &FileName) -> Option<String> {
        let store = &self.peers[peer].store;
        let version = store.version();
        if let Some((v, h)) = self.hashes.get(&(peer, name.clone()))
            && *v == version
        {
            return Some(h.clone());
        }
        let data = store.get(name)?;
        let h = match self.known.iter().find(|(c, _)| c.same_as(&data)) {
            Some((_, h)) => h.clone(),
            None => {
                let h = Hash::of(&data.to_vec()).to_string();
                self.known.push((data, h.clone()));
                h
            }
        };
        self.hashes.insert((peer, name.clone()), (version, h.clone()));
        Some(h)
    }

    pub(super) fn check(&mut self, check: &Check) -> Result<(), String> {
        let name_of = |n: &str| FileName::new(n).map_err(|e| e.to_string());
        match check {
            Check::FileHash { peer, name, hash } => {
                let n = name_of(name)?;
                for i in self.matching(peer) {
                    let who = self.peers[i].name.clone();
                    match self.file_hash(i, &n) {
                        Some(h) if h == *hash => {}
                        Some(h) => return Err(format!("{who} has {name} with blake3 {h}")),
                        None => return Err(format!("{who} does not have {name}")),
                    }
                }
                Ok(())
            }
            Check::SameFile { peer, name, other } => {
                let n = name_of(name)?;
                let theirs = self.file_hash(self.peer(other), &n).ok_or(format!("{other} does not have {name}"))?;
                for i in self.matching(peer) {
                    let who = self.peers[i].name.clone();
                    match self.file_hash(i, &n) {
                        Some(h) if h == theirs => {}
                        Some(h) => return Err(format!("{who} has {name} with blake3 {h}, {other} has {theirs}")),
                        None => return Err(format!("{who} does not have {name}")),
                    }
                }
                Ok(())
            }
            Check::NoFile { peer, name } => {
                let n = name_of(name)?;
                match self.matching(peer).into_iter().find(|&i| self.peers[i].store.get(&n).is_some()) {
                    Some(i) => Err(format!("{} has {name}", self.peers[i].name)),
                    None => Ok(()),
                }
            }
            Check::Listing { peer, names } => {
                let got: Vec<String> =
                    self.peers[self.peer(peer)].store.names().iter().map(|n| n.to_string()).collect();
                let mut want = names.clone();
                want.sort();
                if got == want { Ok(()) } else { Err(format!("{peer} has [{}]", got.join(", "))) }
            }
            Check::SentAtMost { peer, bytes } => {
                let (sent, _) = self.net.counters(self.peer(peer));
                if sent <= bytes.0 { Ok(()) } else { Err(format!("{peer} sent {sent} bytes")) }
            }
            Check::StepDone(id) => match self.step_by_id(id) {
                Some((i, StepState::Done { ended, .. })) => {
                    if self.met(i, ended) {
                        Ok(())
                    } else {
                        Err(format!("step {id} ended: {}", ended.result))
                    }
                }
                _ => Err(format!("step {id} has not ended")),
            },
            Check::StepWithin { step, within } => match self.step_by_id(step) {
                Some((_, StepState::Done { start, end, .. })) => {
                    let took = *end - *start;
                    if took <= within.0 { Ok(()) } else { Err(format!("step {step} took {}", secs(took))) }
                }
                _ => Err(format!("step {step} has not ended")),
            },
            Check::Spread { step, at_most } => match self.step_by_id(step) {
                Some((_, StepState::Done { ended, .. })) => match ended.spread {
                    Some(spread) if spread <= at_most.0 => Ok(()),
                    Some(spread) => Err(format!("the peers of step {step} ended {} apart", secs(spread))),
                    None => Err(format!("step {step} is not done by a group of peers")),
                },
                _ => Err(format!("step {step} has not ended")),
            },
            Check::StepTook { step, at_least, at_most } => match self.step_by_id(step) {
                Some((_, StepState::Done { start, end, .. })) => {
                    let took = *end - *start;
                    if took >= at_least.0 && took <= at_most.0 {
                        Ok(())
                    } else {
                        Err(format!("step {step} took {}", secs(took)))
                    }
                }
                _ => Err(format!("step {step} has not ended")),
            },
        }
    }

    pub(super) fn step_by_id(&self, id: &str) -> Option<(usize, &StepState)> {
        (0..self.steps.len()).find(|&i| self.scenario.step_id(i) == id).map(|i| (i, &self.steps[i]))
    }

    /// Whether step `i` ended as expected (ok, without an expectation).
    pub(super) fn met(&self, i: usize, ended: &Ended) -> bool {
        match &self.scenario.timeline[i].expect {
            None | Some(Outcome::Ok) => ended.ok,
            Some(Outcome::Error(kind)) => {
                !ended.ok
                    && (ended.kind == Some(*kind) || ended.parts.iter().any(|p| p.result.contains(kind_word(*kind))))
            }
        }
    }
}

pub(super) fn check_text(c: &Check) -> String {
    match c {
        Check::FileHash { peer, name, hash } => format!("{peer} has {name} with blake3 {hash}"),
        Check::SameFile { peer, name, other } => format!("{peer} has the same {name} as {other}"),
        Check::NoFile { peer, name } => format!("{peer} does not have {name}"),
        Check::Listing { peer, names } => format!("{peer} has exactly [{}]", names.join(", ")),
        Check::SentAtMost { peer, bytes } => format!("{peer} sent at most {} bytes", bytes.0),
        Check::StepDone(s) => format!("step {s} ended as expected"),
        Check::StepWithin { step, within } => format!("step {step} took at most {}", secs(within.0)),
        Check::StepTook { step, at_least, at_most } => {
            format!("step {step} took between {} and {}", secs(at_least.0), secs(at_most.0))
        }
        Check::Spread { step, at_most } => format!("the peers of step {step} ended within {}", secs(at_most.0)),
    }
}

pub(super) fn expect_text(e: &Expect) -> String {
    match e {
        Expect::Eventually { within, check } => format!("within {}: {}", secs(within.0), check_text(check)),
        Expect::Always(check) => format!("always: {}", check_text(check)),
    }
}
