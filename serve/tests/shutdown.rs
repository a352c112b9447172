//! Graceful shutdown: on SIGTERM readiness flips to 503 first, requests keep
//! being served through the drain window, in-flight requests complete, and
//! the process exits 0.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{output, v2_request, Server};

#[test]
fn sigterm_drains_then_finishes_in_flight_requests() {
    let mut server = Server::start(&["--models", "models", "--drain-seconds", "1.5"]);
    assert_eq!(server.get("/v2/health/ready").0, 200);

    // A request in flight across the whole shutdown: headers and half the
    // body now, the rest after the listener has closed.
    let body = v2_request("X", &[vec![5.0, 3.0, 1.0, 0.0]]).to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut in_flight = TcpStream::connect(&addr).unwrap();
    write!(
        in_flight,
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    in_flight.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let signalled = Instant::now();
    server.signal("TERM");
    // Readiness flips first, while the server still answers.
    let mut flipped = false;
    while signalled.elapsed() < Duration::from_secs(1) {
        let (status, _) = server.get("/v2/health/ready");
        if status == 503 {
            flipped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        flipped,
        "readiness did not report 503 during the drain window"
    );
    // New requests are still served during the drain window.
    let (status, _) = server.post_json(
        "/v2/models/iris/infer",
        &v2_request("X", &[vec![5.0, 3.0, 1.0, 0.0]]),
    );
    assert_eq!(status, 200);

    // After the drain window the listener closes...
    std::thread::sleep(Duration::from_millis(1800).saturating_sub(signalled.elapsed()));
    let refused = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        TcpStream::connect(&addr).is_err()
    });
    assert!(
        refused,
        "the listener is still accepting after the drain window"
    );

    // ...but the in-flight request still completes.
    in_flight.write_all(tail.as_bytes()).unwrap();
    let mut response = String::new();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    in_flight.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "in-flight request got: {response}"
    );
    let json: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(output(&json, "label")["data"][0], "setosa");

    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "serve exited with {status}");
    assert!(server.log().contains("draining"), "{}", server.log());
}

#[test]
fn second_signal_ends_the_drain_window_early() {
    let mut server = Server::start(&["--models", "models", "--drain-seconds", "30"]);
    server.signal("INT");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.get("/v2/health/ready").0, 503);
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "serve exited with {status}");
}
