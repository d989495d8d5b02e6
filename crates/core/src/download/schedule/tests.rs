use super::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

fn t(secs: f64) -> Time {
    Time::ZERO + Duration::from_secs_f64(secs)
}

/// A model source: answers its requests in order at `rate` bytes per
/// second, `latency` seconds away; `None` never answers.
struct Model {
    rate: Option<f64>,
    latency: f64,
    /// (range, when the last byte arrives at the downloader).
    queue: VecDeque<(Range<u64>, f64)>,
    busy_until: f64,
    delivered: u64,
}

struct Run {
    finish: f64,
    delivered: Vec<u64>,
    max_in_flight: u64,
    fetched: u64,
}

/// Plays `size` bytes over `models` until done or `limit` seconds.
fn play(size: u64, block: u32, config: ScheduleConfig, rates: &[Option<f64>], latency: f64, limit: f64) -> Run {
    let mut s = Schedule::new(size, block, config, &[]);
    let mut models: Vec<Model> = rates
        .iter()
        .map(|&rate| Model { rate, latency, queue: VecDeque::new(), busy_until: 0.0, delivered: 0 })
        .collect();
    for i in 0..models.len() {
        s.join(i);
    }
    let mut now = 0.0;
    let mut max_in_flight = 0;
    let mut fetched = 0;
    let mut seen = vec![false; size.div_ceil(u64::from(block)) as usize];
    while !s.is_done() {
        assert!(now < limit, "not done after {limit} s: {} bytes left", s.remaining());
        let mut actions = s.poll(t(now), None);
        loop {
            for a in std::mem::take(&mut actions) {
                match a {
                    Action::Fetch { peer, range } => {
                        let m = &mut models[peer];
                        fetched += range.end - range.start;
                        if let Some(rate) = m.rate {
                            let start = m.busy_until.max(now + m.latency);
                            m.busy_until = start + (range.end - range.start) as f64 / rate;
                            m.queue.push_back((range, m.busy_until + m.latency));
                        }
                    }
                    Action::Cancel { peer, range } => {
                        models[peer].queue.retain(|(r, _)| *r != range);
                    }
                    Action::GiveUp { peer } => models[peer].rate = None,
                }
            }
            max_in_flight = max_in_flight.max(s.in_flight());
            // The next answer, or a tick.
            let next = models
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.queue.front().map(|(_, at)| (*at, i)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let tick = now + 0.1;
            match next {
                Some((at, i)) if at <= tick => {
                    now = at;
                    let Some((range, _)) = models[i].queue.pop_front() else { unreachable!() };
                    models[i].delivered += range.end - range.start;
                    for b in range.start / u64::from(block)..range.end.div_ceil(u64::from(block)) {
                        seen[b as usize] = true;
                    }
                    actions = s.arrived(i, &range, t(now));
                    actions.extend(s.poll(t(now), None));
                }
                _ => {
                    now = tick;
                    break;
                }
            }
        }
    }
    assert!(seen.iter().all(|&b| b), "every block arrived");
    Run { finish: now, delivered: models.iter().map(|m| m.delivered).collect(), max_in_flight, fetched }
}

#[test]
fn four_equal_sources_share_the_work_and_fill_their_links() {
    let size = 64 * MIB;
    let rate = 1.25e6; // 10 Mbit
    let run = play(size, 16 * 1024, ScheduleConfig::default(), &[Some(rate); 4], 0.02, 60.0);
    let ideal = size as f64 / (4.0 * rate);
    assert!(run.finish < ideal * 1.05, "took {:.2} s, ideal {ideal:.2} s", run.finish);
    for d in &run.delivered {
        assert!(*d as f64 > size as f64 / 4.0 * 0.8, "uneven shares: {:?}", run.delivered);
    }
    assert!(run.fetched < size + size / 50, "little duplicate work: {} of {size}", run.fetched);
}

#[test]
fn a_slow_source_does_not_set_the_finish_time() {
    let size = 64 * MIB;
    let fast = 1.25e6;
    let rates = [Some(fast), Some(fast), Some(fast), Some(fast / 10.0)];
    let run = play(size, 16 * 1024, ScheduleConfig::default(), &rates, 0.02, 60.0);
    let ideal = size as f64 / (3.1 * fast);
    assert!(run.finish < ideal * 1.1, "took {:.2} s, ideal {ideal:.2} s", run.finish);
    assert!(run.delivered[3] > 0, "the slow source still helps");
}

#[test]
fn the_end_is_taken_over_from_a_source_that_stalls() {
    // One source accepts requests and never answers: after the request
    // timeout its ranges go to the other, with no stall at the end.
    let size = 8 * MIB;
    let config = ScheduleConfig { request_timeout: Duration::from_secs(2), ..ScheduleConfig::default() };
    let run = play(size, 16 * 1024, config, &[Some(4e6), None], 0.01, 30.0);
    assert_eq!(run.delivered[0], size);
    assert!(run.finish < 2.0 + size as f64 / 4e6 + 1.0, "took {:.2} s", run.finish);
}

#[test]
fn bytes_in_flight_stay_under_the_cap() {
    let size = 256 * MIB;
    let config = ScheduleConfig { download_cap: 8 * MIB, ..ScheduleConfig::default() };
    let run = play(size, 64 * 1024, config, &[Some(500e6); 3], 0.0005, 60.0);
    assert!(run.max_in_flight <= 8 * MIB + MAX_REQUEST, "{}", run.max_in_flight);
}

#[test]
fn requests_grow_with_the_rate_and_stay_in_bounds() {
    let mut s = Schedule::new(1 << 30, 64 * 1024, ScheduleConfig::default(), &[]);
    s.join(0);
    let first = s.poll(t(0.0), None);
    let Action::Fetch { range, .. } = &first[0] else { panic!("{first:?}") };
    assert_eq!(range.end - range.start, FIRST_REQUEST);
    // Deliver everything at 1 GB/s for a while.
    let mut now = 0.0;
    let mut largest = 0;
    let mut queue: VecDeque<Range<u64>> = first
        .into_iter()
        .filter_map(|a| if let Action::Fetch { range, .. } = a { Some(range) } else { None })
        .collect();
    for _ in 0..200 {
        let Some(r) = queue.pop_front() else { break };
        now += (r.end - r.start) as f64 / 1e9;
        largest = largest.max(r.end - r.start);
        s.arrived(0, &r, t(now));
        for a in s.poll(t(now), None) {
            if let Action::Fetch { range, .. } = a {
                assert_eq!(range.start % (64 * 1024), 0);
                queue.push_back(range);
            }
        }
    }
    assert_eq!(largest, MAX_REQUEST);
}

#[test]
fn a_pinned_request_size_is_kept() {
    let config = ScheduleConfig { request: Some(100), ..ScheduleConfig::default() };
    let mut s = Schedule::new(100 * KIB, 16 * 1024, config, &[]);
    s.join(0);
    for a in s.poll(t(0.0), None) {
        let Action::Fetch { range, .. } = a else { panic!() };
        // Below a block: the source splits the block into 100-byte reads.
        assert_eq!(range.end - range.start, 16 * KIB);
    }
    let config = ScheduleConfig { request: Some(40 * KIB), ..ScheduleConfig::default() };
    let mut s = Schedule::new(1 << 20, 16 * 1024, config, &[]);
    s.join(0);
    for a in s.poll(t(0.0), None) {
        let Action::Fetch { range, .. } = a else { panic!() };
        assert_eq!(range.end - range.start, 32 * KIB, "whole blocks");
    }
}

#[test]
fn ranges_already_here_are_not_fetched() {
    let bs = 16 * KIB;
    let have = [0..4 * bs, 8 * bs..10 * bs];
    let mut s = Schedule::new(12 * bs + 5, bs as u32, ScheduleConfig::default(), &have);
    assert_eq!(s.remaining(), 12 * bs + 5 - 6 * bs);
    s.join(0);
    let mut got = Vec::new();
    for a in s.poll(t(0.0), None) {
        if let Action::Fetch { range, .. } = a {
            got.push(range);
        }
    }
    let mut merged: Vec<Range<u64>> = Vec::new();
    for r in &got {
        match merged.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => merged.push(r.clone()),
        }
    }
    assert_eq!(merged, vec![4 * bs..8 * bs, 10 * bs..12 * bs + 5]);
    for r in &got {
        s.arrived(0, r, t(1.0));
    }
    assert!(s.is_done());
}

#[test]
fn a_source_that_is_gone_gives_its_ranges_back() {
    let bs = 16 * KIB;
    let mut s = Schedule::new(64 * bs, bs as u32, ScheduleConfig::default(), &[]);
    s.join(0);
    let taken: Vec<Action> = s.poll(t(0.0), None);
    assert!(!taken.is_empty());
    s.gone(0);
    assert_eq!(s.in_flight(), 0);
    s.join(1);
    let mut total = 0;
    let mut now = 0.0;
    while !s.is_done() {
        now += 0.01;
        let actions = s.poll(t(now), None);
        assert!(!actions.is_empty(), "work for the new source");
        for a in actions {
            let Action::Fetch { peer, range } = a else { panic!() };
            assert_eq!(peer, 1);
            total += range.end - range.start;
            s.arrived(1, &range, t(now));
        }
    }
    assert_eq!(total, 64 * bs);
    // A late answer of the gone source changes nothing.
    assert!(s.arrived(0, &(0..bs), t(now)).is_empty());
}

#[test]
fn the_first_answer_of_a_duplicated_range_cancels_the_other() {
    let bs = 16 * KIB;
    let mut s = Schedule::new(64 * bs, bs as u32, ScheduleConfig::default(), &[]);
    s.join(0);
    let slow: Vec<Range<u64>> = s
        .poll(t(0.0), None)
        .into_iter()
        .filter_map(|a| if let Action::Fetch { range, .. } = a { Some(range) } else { None })
        .collect();
    assert!(!slow.is_empty());
    // A fast source joins once the slow one has everything.
    s.join(1);
    let first = slow[0].clone();
    s.arrived(0, &first, t(10.0));
    let second = s.poll(t(10.0), None);
    assert!(second.is_empty(), "nothing to take before the newcomer's rate is known: {second:?}");
    // The fast source proves itself on a range handed back by the slow one.
    s.failed(0, &slow[1], t(10.0));
    let got = s.poll(t(10.0), None);
    assert!(!got.is_empty());
    for a in &got {
        let Action::Fetch { peer: 1, range } = a else { panic!("{got:?}") };
        assert!(range.start >= slow[1].start && range.end <= slow[1].end, "{got:?}");
        s.arrived(1, range, t(10.01));
    }
    let stolen = s.poll(t(10.01), None);
    let Some(Action::Fetch { peer: 1, range }) = stolen.first().cloned() else { panic!("{stolen:?}") };
    let cancels = s.arrived(1, &range, t(10.02));
    assert_eq!(cancels, vec![Action::Cancel { peer: 0, range: range.clone() }]);
    // The slow source's answer, arriving anyway, counts nothing twice.
    let before = s.remaining();
    s.arrived(0, &range, t(10.5));
    assert_eq!(s.remaining(), before);
}

#[test]
fn a_late_request_is_cancelled_and_the_source_rests_before_it_gets_more() {
    let bs = 16 * KIB;
    let config = ScheduleConfig { request_timeout: Duration::from_secs(1), ..ScheduleConfig::default() };
    let mut s = Schedule::new(4 * bs, bs as u32, config, &[]);
    s.join(0);
    let asked: Vec<Action> = s.poll(t(0.0), None);
    assert!(!asked.is_empty());
    assert!(s.poll(t(0.9), None).is_empty(), "not late yet, nothing new to ask");
    // Past the timeout: every request is cancelled and its range is missing again.
    let late = s.poll(t(1.5), None);
    assert!(!late.is_empty() && late.iter().all(|a| matches!(a, Action::Cancel { peer: 0, .. })), "{late:?}");
    assert_eq!(s.in_flight(), 0);
    assert_eq!(s.remaining(), 4 * bs);
    // It rests two seconds (doubling with each strike) before it is asked again.
    assert!(s.poll(t(3.0), None).is_empty());
    let again = s.poll(t(3.6), None);
    assert!(again.iter().any(|a| matches!(a, Action::Fetch { peer: 0, .. })), "{again:?}");
    // Meanwhile another source takes the work at once.
    let mut s2 = Schedule::new(
        4 * bs,
        bs as u32,
        ScheduleConfig { request_timeout: Duration::from_secs(1), ..ScheduleConfig::default() },
        &[],
    );
    s2.join(0);
    let _ = s2.poll(t(0.0), None);
    s2.join(1);
    let moved = s2.poll(t(1.5), None);
    assert!(moved.iter().any(|a| matches!(a, Action::Fetch { peer: 1, .. })), "{moved:?}");
}

#[test]
fn requests_polled_often_are_still_cancelled_once_late_each_at_its_time() {
    // The requests are looked through only when one may be late: polled
    // every 10 ms, each source's requests go no earlier than the timeout
    // and at most LATE_EVERY after it.
    let bs = 16 * KIB;
    let config = ScheduleConfig { request_timeout: Duration::from_secs(1), ..ScheduleConfig::default() };
    // Large enough that the second source gets requests of its own.
    let mut s = Schedule::new(16 * MIB, bs as u32, config, &[]);
    s.join(0);
    let mut cancelled = [None, None];
    for step in 0..300 {
        let now = step as f64 * 0.01;
        if step == 50 {
            s.join(1);
        }
        for a in s.poll(t(now), None) {
            if let Action::Cancel { peer, .. } = a {
                cancelled[peer].get_or_insert(now);
            }
        }
    }
    let slack = LATE_EVERY.as_secs_f64() + 0.011;
    let (first, second) = (cancelled[0].unwrap(), cancelled[1].unwrap());
    assert!(first > 1.0 && first <= 1.0 + slack, "{first}");
    assert!(second > 1.5 && second <= 1.5 + slack, "{second}");
}

#[test]
fn a_source_that_keeps_failing_is_given_up_not_asked_forever() {
    let bs = 16 * KIB;
    let config = ScheduleConfig { request_timeout: Duration::from_secs(1), ..ScheduleConfig::default() };
    let mut s = Schedule::new(4 * bs, bs as u32, config, &[]);
    s.join(0);
    s.join(1);
    let mut now = 0.0;
    let mut given_up = Vec::new();
    // Peer 0 is refused (busy) every range it is asked; peer 1 never answers.
    for _ in 0..200 {
        for a in s.poll(t(now), None) {
            match a {
                Action::Fetch { peer: 0, range } => s.failed(0, &range, t(now)),
                Action::GiveUp { peer } => {
                    assert!(!given_up.contains(&peer), "each source once");
                    given_up.push(peer);
                }
                _ => {}
            }
        }
        if s.active() == 0 {
            break;
        }
        now += 0.5;
    }
    assert_eq!(s.active(), 0, "both were given up within {now} s");
    given_up.sort();
    assert_eq!(given_up, [0, 1]);
    assert!(now < 200.0, "after at most {MAX_STRIKES} strikes and their rests: {now} s");
    assert_eq!(s.in_flight(), 0, "their ranges went back");
    assert_eq!(s.remaining(), 4 * bs);
}

fn fetches(actions: &[Action]) -> Vec<(usize, Range<u64>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fetch { peer, range } => Some((*peer, range.clone())),
            _ => None,
        })
        .collect()
}

fn bits(count: u64, set: impl IntoIterator<Item = u64>) -> Bitfield {
    let mut b = Bitfield::new(count);
    for i in set {
        b.set(i);
    }
    b
}

#[test]
fn a_partial_source_is_asked_only_for_blocks_it_has() {
    let block = 16 * KIB;
    let mut s = Schedule::new(64 * block, block as u32, ScheduleConfig::default(), &[]);
    let _ = s.holding(0, Some(bits(64, [3, 4, 5, 40])));
    s.join(0);
    let asked = fetches(&s.poll(t(0.0), None));
    assert!(!asked.is_empty());
    for (peer, range) in &asked {
        assert_eq!(*peer, 0);
        for b in range.start / block..range.end.div_ceil(block) {
            assert!([3, 4, 5, 40].contains(&b), "block {b} asked of a source without it");
        }
    }
    // It gets block 41: that is asked for too, once it has room.
    s.has(0, 41);
    assert!(s.holds(0, &(41 * block..42 * block)));
    assert!(s.wants_from(0));
}

#[test]
fn whether_a_partial_source_is_wanted_follows_its_blocks_and_what_is_missing() {
    let block = 16 * KIB;
    let config = ScheduleConfig { request: Some(block), ..ScheduleConfig::default() };
    let mut s = Schedule::new(8 * block, block as u32, config, &[]);
    let _ = s.holding(0, Some(bits(8, [2])));
    assert!(s.wants_from(0));
    s.join(0);
    assert_eq!(fetches(&s.poll(t(0.0), None)), vec![(0, 2 * block..3 * block)]);
    // Its one block is asked for: nothing more is wanted from it, however
    // often it is asked (the answer is kept until something changes).
    assert!(!s.wants_from(0));
    assert!(!s.wants_from(0));
    // It gets a block still missing: wanted again.
    s.has(0, 5);
    assert!(s.wants_from(0));
    // It says it holds only the block being fetched: nothing wanted.
    let _ = s.holding(0, Some(bits(8, [2])));
    assert!(!s.wants_from(0));
    // That request fails: the block is missing again, and wanted.
    s.failed(0, &(2 * block..3 * block), t(0.1));
    assert!(s.wants_from(0));
}

#[test]
fn the_rarest_blocks_come_first_and_equals_are_drawn_at_random() {
    let block = 16 * KIB;
    let n = 64;
    // Past the random first blocks.
    let first = 0..RANDOM_FIRST * block;
    let have = std::slice::from_ref(&first);
    let pick = |seed: u64| {
        let config = ScheduleConfig { seed, request: Some(block), ..ScheduleConfig::default() };
        let mut s = Schedule::new(n * block, block as u32, config, have);
        s.delivered_blocks = RANDOM_FIRST;
        // Three partial sources: blocks 10..20 are held by all three,
        // 30..34 by one. A fourth source has everything.
        let _ = s.holding(0, Some(bits(n, (10..20).chain(30..34))));
        let _ = s.holding(1, Some(bits(n, 10..20)));
        let _ = s.holding(2, Some(bits(n, 10..20)));
        for p in 0..3 {
            s.join(p);
        }
        // Only the seed is asked here: 0..3 rest.
        for p in 0..3 {
            s.rest(p, t(0.0));
        }
        s.join(3);
        let asked = fetches(&s.poll(t(0.0), None));
        asked.iter().map(|(_, r)| r.start / block).collect::<Vec<_>>()
    };
    let a = pick(1);
    // The seed is asked first for what no partial source has.
    for b in &a[..4] {
        assert!(!(10..20).contains(b) && !(30..34).contains(b), "{a:?}");
    }
    let b = pick(2);
    assert_ne!(a, b, "other seeds, other blocks");
    assert_eq!(pick(1), a, "the same seed, the same blocks");
}

#[test]
fn a_block_a_source_turns_out_not_to_have_goes_elsewhere_without_a_strike() {
    let block = 16 * KIB;
    let config = ScheduleConfig { request: Some(block), ..ScheduleConfig::default() };
    let mut s = Schedule::new(4 * block, block as u32, config, &[]);
    let _ = s.holding(0, Some(bits(4, [0, 1, 2, 3])));
    s.join(0);
    let asked = fetches(&s.poll(t(0.0), None));
    let (_, range) = asked[0].clone();
    s.not_yet(0, &range);
    assert!(!s.holds(0, &range));
    let _ = s.holding(1, None);
    s.join(1);
    let again = fetches(&s.poll(t(0.1), None));
    assert!(again.contains(&(1, range.clone())), "{again:?}");
    assert!(!again.iter().any(|(p, r)| *p == 0 && *r == range));
}

#[test]
fn a_source_that_says_it_holds_less_has_those_requests_cancelled() {
    let block = 16 * KIB;
    let config = ScheduleConfig { request: Some(block), ..ScheduleConfig::default() };
    let mut s = Schedule::new(8 * block, block as u32, config, &[]);
    let _ = s.holding(0, None);
    s.join(0);
    let asked = fetches(&s.poll(t(0.0), None));
    assert!(!asked.is_empty());
    // It starts showing pieces: it holds block 7 only, as far as it says.
    let cancelled = s.holding(0, Some(bits(8, [7])));
    let back: Vec<Range<u64>> = cancelled
        .iter()
        .filter_map(|a| match a {
            Action::Cancel { peer: 0, range } => Some(range.clone()),
            _ => None,
        })
        .collect();
    let expected: Vec<Range<u64>> = asked.iter().map(|(_, r)| r.clone()).filter(|r| r.start != 7 * block).collect();
    assert_eq!(back, expected);
    let _ = s.holding(1, None);
    s.join(1);
    let again = fetches(&s.poll(t(0.1), None));
    assert!(again.contains(&(1, back[0].clone())), "handed out again: {again:?}");
    assert!(!again.iter().any(|(p, r)| *p == 0 && back.contains(r)), "not asked of 0 again: {again:?}");
}

#[test]
fn an_idle_source_takes_over_a_request_long_overdue_at_a_fast_one() {
    // Source 1 delivers fast, then stops answering (a connection gone
    // quiet) with a request outstanding. Once nothing else is left, the
    // idle source 0 asks for that range too, long before the timeout.
    let config = ScheduleConfig { request: Some(256 * KIB), ..ScheduleConfig::default() };
    let mut s = Schedule::new(MIB, 16 * 1024, config, &[]);
    s.join(0);
    s.join(1);
    let asked = fetches(&s.poll(t(0.0), None));
    let of = |peer| asked.iter().filter(|(p, _)| *p == peer).map(|(_, r)| r.clone()).collect::<Vec<_>>();
    let (zero, one) = (of(0), of(1));
    assert!(one.len() >= 2, "{asked:?}");
    for r in &zero {
        let _ = s.arrived(0, r, t(0.1));
    }
    let _ = s.arrived(1, &one[0], t(0.1));
    for r in &one[2..] {
        let _ = s.arrived(1, r, t(0.1));
    }
    // Not yet overdue: nobody duplicates it.
    assert!(fetches(&s.poll(t(0.12), None)).is_empty());
    let stuck = one[1].clone();
    let later = fetches(&s.poll(t(3.0), None));
    assert_eq!(later, [(0, stuck.clone())]);
    // The first answer wins; the other request is cancelled.
    assert_eq!(s.arrived(0, &stuck, t(3.1)), [Action::Cancel { peer: 1, range: stuck }]);
    assert!(s.is_done());
}

#[test]
fn a_slow_source_keeps_two_requests_queued_whole_or_partial() {
    // Slow (10 s for its first answers), each source still keeps two first
    // requests' worth queued (512 KiB): one alone would leave its uplink
    // idle for a round trip between answers, whether it has the whole file
    // or serves what it has while it downloads.
    let size = 8 * MIB;
    let mut s = Schedule::new(size, 16 * 1024, ScheduleConfig::default(), &[]);
    let _ = s.holding(1, Some(Bitfield::full(size / (16 * KIB))));
    s.join(0);
    s.join(1);
    let first = fetches(&s.poll(t(0.0), None));
    for (peer, range) in &first {
        let _ = s.arrived(*peer, range, t(10.0));
    }
    let next = fetches(&s.poll(t(10.0), None));
    let queued = |peer| next.iter().filter(|(p, _)| *p == peer).map(|(_, r)| r.end - r.start).sum::<u64>();
    for peer in [0, 1] {
        let q = queued(peer);
        assert!((512 * KIB..768 * KIB).contains(&q), "peer {peer}: {q} bytes queued, {next:?}");
    }
}

/// Two partial sources with every block of a 4 MiB file; the second takes
/// turns and does not serve this download now.
fn second_choked() -> Schedule {
    let size = 4 * MIB;
    let blocks = size / (16 * KIB);
    let mut s = Schedule::new(size, 16 * 1024, ScheduleConfig::default(), &[]);
    let _ = s.holding(0, Some(Bitfield::full(blocks)));
    let _ = s.holding(1, Some(Bitfield::full(blocks)));
    s.join(0);
    s.join(1);
    s.choke(1, true);
    s
}

#[test]
fn a_choked_source_is_asked_nothing_until_it_serves_again() {
    let mut s = second_choked();
    let first = fetches(&s.poll(t(0.0), None));
    assert!(!first.is_empty() && first.iter().all(|(p, _)| *p == 0), "{first:?}");
    // It still has what this download wants: interested, though choked.
    assert!(s.interested_in(1));
    s.choke(1, false);
    let next = fetches(&s.poll(t(0.1), None));
    assert!(next.iter().any(|(p, _)| *p == 1), "{next:?}");
    // Requests open at a source keep this download interested in it.
    assert!(s.interested_in(1));
    // Once every block is here, neither has anything wanted.
    let mut now = 0.2;
    while !s.is_done() {
        let open: Vec<(usize, Range<u64>)> = s.flights.values().map(|f| (f.peer, f.range.clone())).collect();
        for (peer, range) in open {
            let _ = s.arrived(peer, &range, t(now));
        }
        let _ = s.poll(t(now), None);
        now += 0.1;
        assert!(now < 100.0, "done in time");
    }
    assert!(!s.interested_in(0) && !s.interested_in(1), "nothing left to want");
}

#[test]
fn a_range_turned_away_goes_to_another_source_without_a_strike() {
    let mut s = second_choked();
    let asked = fetches(&s.poll(t(0.0), None));
    assert!(!asked.is_empty() && asked.iter().all(|(p, _)| *p == 0), "{asked:?}");
    // The first serves others now: it turns every request away.
    s.choke(1, false);
    for (_, range) in &asked {
        s.turned_away(0, range);
    }
    assert_eq!(s.in_flight(), 0, "every range went back");
    let again = fetches(&s.poll(t(0.1), None));
    assert!(!again.is_empty() && again.iter().all(|(p, _)| *p == 1), "asked of the other only: {again:?}");
    // Still interested in the first (it has what is missing), and asked
    // again, at once, once it serves this download: no strike, no rest.
    assert!(s.interested_in(0));
    s.choke(0, false);
    let back = fetches(&s.poll(t(0.2), None));
    assert!(back.iter().any(|(p, _)| *p == 0), "{back:?}");
}

#[test]
fn interest_holds_while_what_a_source_has_is_asked_of_another() {
    // Two blocks left, both with two partial sources; each is asked of
    // one. The other stays interesting: it may be needed yet (a request
    // turned away, a source gone), and each change of mind costs a turn.
    let block = 16 * KIB;
    let mut s = Schedule::new(2 * block, block as u32, ScheduleConfig::default(), &[]);
    for peer in 0..3 {
        let _ = s.holding(peer, Some(Bitfield::full(2)));
        s.join(peer);
    }
    s.choke(2, true);
    let asked = fetches(&s.poll(t(0.0), None));
    assert_eq!(asked.iter().map(|(_, r)| r.end - r.start).sum::<u64>(), 2 * block, "{asked:?}");
    assert!(!s.wants_from(2), "nothing is left to ask for");
    assert!((0..3).all(|p| s.interested_in(p)), "every source has a block not here yet");
    // One block arrives: a source with only it is of no more interest.
    let (peer, range) = asked[0].clone();
    let _ = s.arrived(peer, &range, t(0.1));
    let mut only = Bitfield::new(2);
    only.set(range.start / block);
    let _ = s.holding(2, Some(only));
    assert!(!s.interested_in(2));
    assert!(s.interested_in(1 - peer), "its request is still open");
    let (other, last) = asked[1].clone();
    let _ = s.arrived(other, &last, t(0.2));
    assert!((0..3).all(|p| !s.interested_in(p)), "everything is here");
}
