//! `make memory`: what an idle WebSocket connection costs the server in
//! memory (issue 17), measured in its `/proc/PID/smaps`. Linux only; not
//! part of `make test` (it holds thousands of connections for a while).
//!
//! `PEOPLE` different people (default 1,000) log in and connect one after
//! the other, read their opening frames, and stay; the first `SENDERS`
//! (default 100) say something; everyone is then left idle long enough to
//! be pinged by the heartbeat and answer it (a pump thread here reads every
//! client, which answers pings with pongs, as a browser does). Then, for
//! each connection thread (`conn-N`), the resident pages of its stack
//! mapping (found by the stack pointer of its blocked system call, in
//! `/proc/PID/task/TID/syscall`), and the server's RSS per connection:
//! stacks, and the rest (the heap, mostly).
//!
//! A stack page, once touched, stays resident for the thread's life: what
//! counts is the deepest the thread ever went, over the HTTP request, the
//! upgrade, the join, messages and heartbeats. In a release build each
//! connection thread must keep at most [`MAX_STACK_PAGES`].

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The top page (glibc's thread descriptor and the thread-locals, then the
/// first frames) and one more: 8 KiB of stack, the rest of the 16 KiB of
/// issue 17 for the heap.
const MAX_STACK_PAGES: usize = 2;
const PAGE_KIB: usize = 4;
/// The server's heartbeat: short, so that everyone is pinged (and answers)
/// within the run.
const HEARTBEAT_SECS: f64 = 2.0;
/// How often the pump reads every client.
const PUMP_EVERY: Duration = Duration::from_millis(100);

#[test]
#[ignore = "thousands of connections: `make memory`"]
fn idle_connections_stay_small() {
    let people = setting("PEOPLE", 1000) as usize;
    let senders = (setting("SENDERS", 100) as usize).min(people);
    let server = Server::start(&[
        "--max-connections",
        &(people + 100).to_string(),
        "--heartbeat",
        &HEARTBEAT_SECS.to_string(),
        "--log-level",
        "info",
    ]);
    let rss_before = server.rss_kib();

    let clients: Arc<Mutex<Vec<Client>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(AtomicUsize::new(0));
    let pump = {
        let (clients, stop, lost) = (clients.clone(), stop.clone(), lost.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let mut clients = clients.lock().unwrap();
                for client in clients.iter_mut() {
                    lost.fetch_add(drain(client), Ordering::SeqCst);
                }
                drop(clients);
                std::thread::sleep(PUMP_EVERY);
            }
        })
    };
    for i in 0..people {
        let (mut client, _) = Client::join(&server, &format!("idle{i:05}"));
        if i < senders {
            client.say(&format!("hello from {i}"));
        }
        client.ws.get_ref().set_nonblocking(true).unwrap();
        clients.lock().unwrap().push(client);
    }
    // Two and a half heartbeats: everyone was pinged at least once.
    std::thread::sleep(Duration::from_secs_f64(HEARTBEAT_SECS * 2.5));
    stop.store(true, Ordering::SeqCst);
    pump.join().unwrap();
    assert_eq!(lost.load(Ordering::SeqCst), 0, "connections lost");
    assert_eq!(server.connections(), people as u64);

    let pid = server.child.id();
    let mappings = mappings(pid);
    let mut histogram = BTreeMap::<usize, usize>::new();
    let mut stack_kib = 0;
    let mut depths = Vec::new();
    for (sp, comm) in thread_stack_pointers(pid) {
        if !comm.starts_with("conn-") {
            continue;
        }
        let mapping = mappings
            .iter()
            .find(|m| (m.start..m.end).contains(&sp))
            .expect("the stack pointer is in a mapping");
        *histogram.entry(mapping.rss_kib / PAGE_KIB).or_default() += 1;
        stack_kib += mapping.rss_kib;
        depths.push(mapping.end - sp);
    }
    let threads: usize = histogram.values().sum();
    let rss_after = server.rss_kib();
    let per_connection = (rss_after - rss_before) as f64 / people as f64;
    let stack_each = stack_kib as f64 / threads as f64;
    depths.sort_unstable();
    println!(
        "{people} people ({senders} said something), heartbeat {HEARTBEAT_SECS} s:\n\
         resident stack pages per connection thread (pages: threads): {histogram:?}\n\
         idle read at {} bytes below the stack's top (median)\n\
         RSS {rss_before} -> {rss_after} KiB: {per_connection:.1} KiB per connection, \
         of which stack {stack_each:.1}, the rest {:.1}",
        depths[depths.len() / 2],
        per_connection - stack_each,
    );
    assert_eq!(threads, people, "one blocked connection thread each");
    if !cfg!(debug_assertions) {
        let deepest = *histogram.keys().last().unwrap();
        assert!(
            deepest <= MAX_STACK_PAGES,
            "a connection thread has {deepest} stack pages resident"
        );
    }
}

/// Reads what a (non-blocking) client has been sent, answering pings on
/// the way; 1 if the server has closed it, else 0.
fn drain(client: &mut Client) -> usize {
    loop {
        match client.ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return 0;
            }
            Err(_) => return 1,
        }
    }
}

struct Mapping {
    start: usize,
    end: usize,
    rss_kib: usize,
}

/// The process's memory mappings, with their resident size.
fn mappings(pid: u32) -> Vec<Mapping> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut mappings = Vec::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            mappings.push(Mapping {
                start,
                end,
                rss_kib: 0,
            });
        } else if let Some(rss) = line.strip_prefix("Rss:") {
            let kib = rss.trim().trim_end_matches(" kB").parse().unwrap();
            mappings.last_mut().unwrap().rss_kib = kib;
        }
    }
    mappings
}

/// (stack pointer, name) of each thread of the process that is blocked in
/// a system call: the second-to-last field of `/proc/PID/task/TID/syscall`.
fn thread_stack_pointers(pid: u32) -> Vec<(usize, String)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        let syscall = std::fs::read_to_string(task.join("syscall")).unwrap_or_default();
        let fields: Vec<&str> = syscall.split_whitespace().collect();
        if fields.len() < 3 {
            continue; // running, or gone
        }
        let sp = fields[fields.len() - 2].trim_start_matches("0x");
        if let Ok(sp) = usize::from_str_radix(sp, 16) {
            threads.push((sp, comm.trim().to_string()));
        }
    }
    threads
}
