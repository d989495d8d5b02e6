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
                Expect::Eventually { within, check, after } => match self.window(after.as_deref(), within.0) {
                    None if at_end => {
                        let why = format!("step {} never ended", after.as_deref().unwrap_or_default());
                        self.verdicts[i] = Verdict::Failed(now, why);
                    }
                    // Its step has not ended yet: nothing to decide.
                    None => {}
                    Some(deadline) => match self.check_at(i, check) {
                        Ok(()) => {
                            self.verdicts[i] = Verdict::Held(now);
                            let text = expect_text(&self.scenario.expect[i]);
                            self.log(format!("{text} held"));
                        }
                        Err(why) if now >= deadline || at_end => {
                            let text = expect_text(&self.scenario.expect[i]);
                            self.log(format!("{text} failed: {why}"));
                            self.verdicts[i] = Verdict::Failed(now, why);
                        }
                        Err(why) => self.last_reason[i] = why,
                    },
                },
                Expect::Always(check) => {
                    if let Err(why) = self.check_at(i, check) {
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

    /// Decides expectation `i`'s `check`, again only if what it looks at
    /// may have changed: a check of the stores alone is decided once per
    /// change of any store (a crowd's run has a change per finished file,
    /// and events by the million).
    fn check_at(&mut self, i: usize, check: &Check) -> Result<(), String> {
        let stores_only = matches!(
            check,
            Check::FileHash { .. } | Check::SameFile { .. } | Check::NoFile { .. } | Check::Listing { .. }
        );
        if !stores_only {
            return self.check(check);
        }
        let changes = self.changes.get();
        if let Some((at, result)) = &self.decided[i]
            && *at == changes
        {
            return result.clone();
        }
        let result = self.check(check);
        self.decided[i] = Some((changes, result.clone()));
        result
    }

    /// The deadline of an `Eventually`, once its window is open: `within`
    /// after the start, or after the end of step `after`.
    pub(super) fn window(&self, after: Option<&str>, within: Duration) -> Option<Time> {
        match after {
            None => Some(Time::ZERO + within),
            Some(step) => match self.step_by_id(step) {
                Some((_, StepState::Done { end, .. })) => Some(*end + within),
                _ => None,
            },
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
                for &i in self.matching(peer).iter() {
                    let got = self.file_hash(i, &n);
                    let who = &self.peers[i].name;
                    match got {
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
                for &i in self.matching(peer).iter() {
                    let got = self.file_hash(i, &n);
                    let who = &self.peers[i].name;
                    match got {
                        Some(h) if h == theirs => {}
                        Some(h) => return Err(format!("{who} has {name} with blake3 {h}, {other} has {theirs}")),
                        None => return Err(format!("{who} does not have {name}")),
                    }
                }
                Ok(())
            }
            Check::NoFile { peer, name } => {
                let n = name_of(name)?;
                match self.matching(peer).iter().copied().find(|&i| self.peers[i].store.get(&n).is_some()) {
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
                Some((_, StepState::Done { ended, .. })) => {
                    let (Some(first), Some(last)) = (ended.part_ends.iter().min(), ended.part_ends.iter().max()) else {
                        return Err(format!("step {step} is not done by a group of peers"));
                    };
                    let spread = *last - *first;
                    if spread <= at_most.0 {
                        Ok(())
                    } else {
                        Err(format!("the peers of step {step} ended {} apart", secs(spread)))
                    }
                }
                _ => Err(format!("step {step} has not ended")),
            },
            Check::P99 { step, at_most } => match self.step_by_id(step) {
                Some((_, StepState::Done { start, ended, .. })) => match percentile(*start, &ended.part_ends, 99) {
                    Some(p99) if p99 <= at_most.0 => Ok(()),
                    Some(p99) => Err(format!("99 in 100 peers of step {step} took up to {}", secs(p99))),
                    None => Err(format!("step {step} is not done by a group of peers")),
                },
                _ => Err(format!("step {step} has not ended")),
            },
            Check::Indexed { index, name, sources } => {
                let i = self.peer(index);
                let Some(tracker) = &self.peers[i].running.tracker else {
                    return Err(format!("{index} runs no index (it is down?)"));
                };
                let n: u32 = tracker.files().iter().filter(|f| f.info.name.as_str() == name).map(|f| f.sources).sum();
                if n == *sources { Ok(()) } else { Err(format!("{index} lists {name} with {n} sources")) }
            }
            Check::IndexSize { index, peers, files } => {
                let i = self.peer(index);
                let Some(tracker) = &self.peers[i].running.tracker else {
                    return Err(format!("{index} runs no index (it is down?)"));
                };
                let (p, f) = (tracker.peer_count() as u32, tracker.file_count() as u32);
                if (p, f) == (*peers, *files) { Ok(()) } else { Err(format!("{index} lists {p} peers and {f} files")) }
            }
            Check::TrafficShare { peer, percent } => {
                let (sent, received) = self.net.counters(self.peer(peer));
                let total: u64 = (0..self.peers.len()).map(|i| self.net.counters(i).0).sum();
                let share = (sent + received) as f64 * 100.0 / (total.max(1)) as f64;
                if share <= *percent {
                    Ok(())
                } else {
                    Err(format!(
                        "{peer} moved {share:.3} % of the bytes ({sent} sent, {received} received, of {total})"
                    ))
                }
            }
            Check::NearMinimum { step, seed, peers, name, factor } => {
                let Some((_, StepState::Done { start, end, .. })) = self.step_by_id(step) else {
                    return Err(format!("step {step} has not ended"));
                };
                let took = (*end - *start).as_secs_f64();
                let n = name_of(name)?;
                let seed_at = self.peer(seed);
                let size = self.peers[seed_at].store.size(&n).ok_or(format!("{seed} does not have {name}"))? as f64;
                let group = self.matching(peers);
                let t_min = minimum_time(
                    size,
                    self.net.link(seed_at).up.0 as f64,
                    group.iter().map(|&i| {
                        let l = self.net.link(i);
                        (l.up.0 as f64, l.down.0 as f64)
                    }),
                );
                let ratio = took / t_min;
                let text = format!("step {step} took {took:.3} s, {ratio:.3} x the minimum {t_min:.3} s");
                if ratio <= *factor { Ok(()) } else { Err(text) }
            }
            Check::SentCopies { peer, name, copies } => {
                let n = name_of(name)?;
                let at = self.peer(peer);
                let size = self.peers[at].store.size(&n).ok_or(format!("{peer} does not have {name}"))? as f64;
                let (sent, _) = self.net.counters(at);
                let sent_copies = sent as f64 / size.max(1.0);
                if sent_copies <= *copies {
                    Ok(())
                } else {
                    Err(format!("{peer} sent {sent_copies:.3} copies of {name}"))
                }
            }
            Check::Shunned { step, source } => {
                let Some((_, StepState::Done { ended, .. })) = self.step_by_id(step) else {
                    return Err(format!("step {step} has not ended"));
                };
                // Named by the index as the peer, or by peer exchange as
                // its address.
                let from: Vec<&FromSource> = ended
                    .sources
                    .iter()
                    .filter(|s| s.label == *source || s.label.rsplit_once(':').is_some_and(|(h, _)| h == source))
                    .collect();
                let kept = from.iter().filter(|s| s.bytes > 0).count();
                let dropped = from.iter().filter(|s| s.corrupt).count();
                if kept > 0 {
                    Err(format!("{kept} downloads kept bytes from {source}"))
                } else if dropped == 0 {
                    Err(format!("no download dropped {source} for a corrupt block"))
                } else {
                    Ok(())
                }
            }
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
        Check::P99 { step, at_most } => format!("99 in 100 peers of step {step} took at most {}", secs(at_most.0)),
        Check::Indexed { index, name, sources } => format!("{index} lists {name} with {sources} sources"),
        Check::TrafficShare { peer, percent } => format!("{peer} moved at most {percent} % of the bytes"),
        Check::IndexSize { index, peers, files } => format!("{index} lists {peers} peers and {files} files"),
        Check::NearMinimum { step, factor, .. } => {
            format!("step {step} took at most {factor} x the minimum distribution time")
        }
        Check::SentCopies { peer, name, copies } => format!("{peer} sent at most {copies} copies of {name}"),
        Check::Shunned { step, source } => {
            format!("the downloads of step {step} dropped {source} and kept nothing from it")
        }
    }
}

pub(super) fn expect_text(e: &Expect) -> String {
    match e {
        Expect::Eventually { within, check, after: None } => {
            format!("within {}: {}", secs(within.0), check_text(check))
        }
        Expect::Eventually { within, check, after: Some(a) } => {
            format!("within {} of step {a}: {}", secs(within.0), check_text(check))
        }
        Expect::Always(check) => format!("always: {}", check_text(check)),
    }
}

/// The minimum distribution time of `size` bytes from a seed uploading
/// `seed_up` bytes per second to downloaders with these (up, down) rates
/// (Kumar and Ross, 2006), in seconds.
pub(super) fn minimum_time(size: f64, seed_up: f64, downloaders: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut n, mut ups, mut d_min) = (0.0, 0.0, f64::INFINITY);
    for (up, down) in downloaders {
        n += 1.0;
        ups += up;
        d_min = d_min.min(down);
    }
    (size / seed_up).max(size / d_min).max(n * size / (seed_up + ups))
}

/// The `pct`th percentile of how long each part took since `start`.
pub(super) fn percentile(start: Time, ends: &[Time], pct: usize) -> Option<Duration> {
    let mut took: Vec<Duration> = ends.iter().map(|e| *e - start).collect();
    if took.is_empty() {
        return None;
    }
    took.sort();
    let i = (took.len() * pct).div_ceil(100).clamp(1, took.len()) - 1;
    Some(took[i])
}
