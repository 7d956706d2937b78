//! TLS end to end, with real clients (curl, openssl s_client, python's ssl module) against the
//! real binary, under every model: HTTPS serve (ALPN http/1.1, SNI, the whole chain), echo
//! over TLS with a checksum, a plain-HTTP request on a TLS port (a plain 400), handshake
//! garbage, a client that stops mid-handshake (cut off at --handshake-timeout), certificate
//! reload by modification time, --tls-self-signed's fingerprint, --ktls's fallback, and the
//! usage errors. Certificates are made at test time with the openssl CLI.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, Server, start_fails, wait_until};
use plumb::models::Model;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A self-signed certificate for `cn` (and localhost, 127.0.0.1) made with openssl; `days`
/// negative makes an expired one. Returns (cert, key).
fn make_cert(dir: &Path, name: &str, cn: &str, kind: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let newkey: Vec<&str> = match kind {
        "rsa" => vec!["-newkey", "rsa:2048"],
        "ed25519" => vec!["-newkey", "ed25519"],
        _ => vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    let san = format!("subjectAltName=DNS:{cn},DNS:localhost,IP:127.0.0.1");
    let subj = format!("/CN={cn}");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-nodes", "-days", "2", "-subj", &subj, "-addext", &san,
        ])
        .args(&newkey)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

struct Site {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("index.html"), "hello over tls\n").unwrap();
    let big: Vec<u8> = common::random_bytes(3 << 20, 7);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let (cert, key) = make_cert(dir.path(), "server", "localhost", "ec");
    Site { dir, cert, key }
}

fn serve_tls(model: Model, s: &Site, extra: &[&str]) -> Server {
    let root = s.dir.path().join("www");
    let mut args: Vec<&str> = vec![
        "serve",
        root.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--tls",
        "--tls-cert",
        s.cert.to_str().unwrap(),
        "--tls-key",
        s.key.to_str().unwrap(),
        "--model",
        model.name(),
        "--workers",
        "2",
        "--threads",
        "4",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s_client(port: &str, extra: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-ign_eof",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn python(script: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

const PY_GET: &str = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b: break
            data += b
        print(s.version(), s.selected_alpn_protocol())
        print(data.decode())
"#;

fn tools() -> bool {
    for t in ["openssl", "curl", "python3"] {
        if !have(t) {
            eprintln!("skipped: {t} is not installed");
            return false;
        }
    }
    true
}

#[test]
fn https_serve_under_every_model_with_curl_openssl_and_python() {
    if !tools() {
        return;
    }
    let s = site();
    for &model in Model::ALL {
        let srv = serve_tls(model, &s, &[]);
        let port = port_of(srv.addr()).to_string();
        let url = format!("https://localhost:{port}/index.html");
        let (ok, body, err) = curl(&["--cacert", s.cert.to_str().unwrap(), &url]);
        assert!(ok, "{model}: curl: {err}");
        assert_eq!(body, "hello over tls\n", "{model}");
        // A 3 MiB file goes through the TLS layer in bounded chunks, intact.
        let (ok, body, err) = curl(&[
            "--cacert",
            s.cert.to_str().unwrap(),
            &format!("https://localhost:{port}/big.bin"),
            "-o",
            "-",
            "-w",
            "",
        ]);
        assert!(ok, "{model}: curl big: {err}");
        let want = common::random_bytes(3 << 20, 7);
        assert_eq!(body.len(), String::from_utf8_lossy(&want).len(), "{model}");
        // openssl: ALPN http/1.1 negotiated, SNI sent, TLS 1.3.
        let out = s_client(
            &port,
            &["-alpn", "http/1.1", "-servername", "localhost"],
            b"GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        assert!(out.contains("ALPN protocol: http/1.1"), "{model}: {out}");
        assert!(out.contains("hello over tls"), "{model}: {out}");
        // TLS 1.2 is offered too; nothing older.
        let out12 = s_client(&port, &["-tls1_2"], b"");
        assert!(out12.contains("TLSv1.2"), "{model}: {out12}");
        let out11 = s_client(&port, &["-tls1_1"], b"");
        assert!(
            !out11.contains("Cipher is ECDHE"),
            "{model}: TLS 1.1 accepted: {out11}"
        );
        // python's ssl module.
        let (ok, out) = python(PY_GET, &[&port, s.cert.to_str().unwrap()]);
        assert!(ok, "{model}: python: {out}");
        assert!(out.contains("TLSv1.3 http/1.1"), "{model}: {out}");
        assert!(out.contains("hello over tls"), "{model}: {out}");
        let (status, err) = srv.stop();
        assert!(status.success(), "{model}: {err}");
    }
}

#[test]
fn keys_of_every_kind_and_the_whole_chain_are_served() {
    if !tools() {
        return;
    }
    let s = site();
    for kind in ["rsa", "ed25519"] {
        let (cert, key) = make_cert(s.dir.path(), kind, "localhost", kind);
        let mut chain = std::fs::read(&cert).unwrap();
        // A second certificate after the leaf: both must reach the client.
        chain.extend(std::fs::read(&s.cert).unwrap());
        let chain_path = s.dir.path().join(format!("{kind}-chain.pem"));
        std::fs::write(&chain_path, &chain).unwrap();
        let root = s.dir.path().join("www");
        let srv = Server::start(&[
            "serve",
            root.to_str().unwrap(),
            "-l",
            "127.0.0.1:0",
            "--tls",
            "--tls-cert",
            chain_path.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ]);
        let out = s_client(port_of(srv.addr()), &["-showcerts"], b"");
        assert_eq!(
            out.matches("-----BEGIN CERTIFICATE-----").count(),
            2,
            "{kind}: {out}"
        );
        srv.stop();
    }
}

#[test]
fn plain_http_on_a_tls_port_gets_a_plain_400_and_garbage_a_close() {
    if !tools() {
        return;
    }
    let s = site();
    for model in [Model::Event, Model::Thread, Model::Fork] {
        let srv = serve_tls(model, &s, &[]);
        let (ok, body, err) = curl(&[&format!("http://127.0.0.1:{}/", port_of(srv.addr()))]);
        assert!(ok, "{model}: {err}");
        assert!(body.contains("speaks HTTPS"), "{model}: {body}");
        // Garbage that claims to be a handshake record: an alert or a close, never a hang.
        let mut c = common::connect(srv.addr());
        c.write_all(b"\x16\x03\x01\x00\x05\xff\xff\xff\xff\xff")
            .unwrap();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        assert!(buf.len() < 64, "{model}: {buf:?}");
        // The server goes on.
        let (ok, body, err) = curl(&[
            "--cacert",
            s.cert.to_str().unwrap(),
            &format!("https://localhost:{}/index.html", port_of(srv.addr())),
        ]);
        assert!(ok && body == "hello over tls\n", "{model}: {err}");
        srv.stop();
    }
}

#[test]
fn a_client_that_stops_mid_handshake_is_cut_off_at_the_handshake_timeout() {
    if !tools() {
        return;
    }
    let s = site();
    for model in [Model::Event, Model::Pool, Model::Prefork] {
        let srv = serve_tls(model, &s, &["--handshake-timeout", "1"]);
        let mut c = common::connect(srv.addr());
        // The first bytes of a ClientHello record, then nothing.
        c.write_all(b"\x16\x03\x01\x02\x00\x01").unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(900),
            "{model}: closed after {took:?}"
        );
        assert!(took < DEADLINE, "{model}");
        srv.stop();
    }
}

#[test]
fn echo_over_tls_returns_every_byte() {
    if !tools() {
        return;
    }
    let s = site();
    // Lock-step (a window of 256 KiB in flight): an SSLSocket must not be used from two
    // threads at once.
    const PY_ECHO: &str = r#"
import socket, ssl, sys, hashlib
port, ca, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection(("127.0.0.1", port), timeout=60)
s = ctx.wrap_socket(raw, server_hostname="localhost")
block = bytes((i * 7 + i // 4099) & 255 for i in range(1 << 18))
sent_h, got_h = hashlib.sha256(), hashlib.sha256()
sent = got = 0
while got < size:
    if sent < size:
        s.sendall(block); sent_h.update(block); sent += len(block)
    while got < sent:
        b = s.recv(1 << 16)
        if not b: break
        got_h.update(b); got += len(b)
    if got < sent: break
print(got == size and got_h.hexdigest() == sent_h.hexdigest(), got)
"#;
    for &model in Model::ALL {
        let size = if model == Model::Event {
            64 << 20
        } else {
            4 << 20
        };
        let srv = Server::start(&[
            "echo",
            "-l",
            "127.0.0.1:0",
            "--tls",
            "--tls-cert",
            s.cert.to_str().unwrap(),
            "--tls-key",
            s.key.to_str().unwrap(),
            "--model",
            model.name(),
        ]);
        let (ok, out) = python(
            PY_ECHO,
            &[
                port_of(srv.addr()),
                s.cert.to_str().unwrap(),
                &size.to_string(),
            ],
        );
        assert!(ok && out.starts_with("True"), "{model}: {out}");
        srv.stop();
    }
}

#[test]
fn a_plain_and_a_tls_listener_side_by_side_and_sni_picks_the_certificate() {
    if !tools() {
        return;
    }
    let s = site();
    let (other_cert, other_key) = make_cert(s.dir.path(), "other", "other.test", "ec");
    let root = s.dir.path().join("www");
    let sni = format!(
        "other.test={},{}",
        other_cert.display(),
        other_key.display()
    );
    let srv = Server::start_with(
        &[
            "serve",
            root.to_str().unwrap(),
            "-l",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            s.cert.to_str().unwrap(),
            "--tls-key",
            s.key.to_str().unwrap(),
            "--tls-sni",
            &sni,
        ],
        2,
    );
    let (plain, tls) = (port_of(&srv.addrs[0]), port_of(&srv.addrs[1]));
    let (ok, body, _) = curl(&[&format!("http://127.0.0.1:{plain}/index.html")]);
    assert!(ok && body == "hello over tls\n");
    let (ok, body, err) = curl(&[
        "--cacert",
        s.cert.to_str().unwrap(),
        &format!("https://localhost:{tls}/index.html"),
    ]);
    assert!(ok && body == "hello over tls\n", "{err}");
    let out = s_client(tls, &["-servername", "other.test"], b"");
    assert!(
        out.contains("CN = other.test") || out.contains("CN=other.test"),
        "{out}"
    );
    let out = s_client(tls, &["-servername", "localhost"], b"");
    assert!(
        out.contains("CN = localhost") || out.contains("CN=localhost"),
        "{out}"
    );
    srv.stop();
}

#[test]
fn a_changed_certificate_is_used_for_the_next_handshake_and_a_bad_one_is_refused() {
    if !tools() {
        return;
    }
    let s = site();
    for model in [Model::Event, Model::Prefork] {
        let live_cert = s.dir.path().join("live.crt");
        let live_key = s.dir.path().join("live.key");
        std::fs::copy(&s.cert, &live_cert).unwrap();
        std::fs::copy(&s.key, &live_key).unwrap();
        let root = s.dir.path().join("www");
        let srv = Server::start(&[
            "serve",
            root.to_str().unwrap(),
            "-l",
            "127.0.0.1:0",
            "--tls",
            "--tls-cert",
            live_cert.to_str().unwrap(),
            "--tls-key",
            live_key.to_str().unwrap(),
            "--model",
            model.name(),
            "--workers",
            "1",
        ]);
        let port = port_of(srv.addr()).to_string();
        let subject = |p: &str| s_client(p, &["-servername", "localhost"], b"");
        assert!(subject(&port).contains("CN = localhost"), "{model}");
        // A bad file: one line, and the old certificate stays.
        std::fs::write(&live_cert, "not a certificate\n").unwrap();
        assert!(
            wait_until(DEADLINE, || {
                let _ = subject(&port);
                srv.stderr().contains("TLS reload failed")
            }),
            "{model}: {}",
            srv.stderr()
        );
        assert!(subject(&port).contains("CN = localhost"), "{model}");
        // A new pair: the next handshakes get it.
        let (new_cert, new_key) = make_cert(s.dir.path(), "renewed", "renewed.test", "ec");
        std::fs::copy(&new_key, &live_key).unwrap();
        std::fs::copy(&new_cert, &live_cert).unwrap();
        assert!(
            wait_until(DEADLINE, || subject(&port).contains("CN = renewed.test")),
            "{model}: {}",
            srv.stderr()
        );
        srv.stop();
    }
}

#[test]
fn self_signed_prints_the_fingerprint_the_client_sees() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&[
        "serve",
        dir.path().to_str().unwrap(),
        "-l",
        "127.0.0.1:0",
        "--tls",
        "--tls-self-signed",
    ]);
    let err = srv.stderr();
    let printed = err
        .split("SHA-256 fingerprint ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .unwrap_or_else(|| panic!("no fingerprint in {err}"))
        .to_string();
    let pem = dir.path().join("seen.pem");
    let out = s_client(port_of(srv.addr()), &[], b"");
    let begin = out
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = out.find("-----END CERTIFICATE-----").unwrap() + 25;
    std::fs::write(&pem, &out[begin..end]).unwrap();
    let fp = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout);
    assert!(fp.trim().ends_with(&printed), "{fp} vs {printed}");
    srv.stop();
}

#[test]
fn ktls_falls_back_to_user_space_with_one_line() {
    if !tools() {
        return;
    }
    let s = site();
    let srv = serve_tls(Model::Event, &s, &["--ktls"]);
    let port = port_of(srv.addr()).to_string();
    for _ in 0..3 {
        let (ok, body, err) = curl(&[
            "--cacert",
            s.cert.to_str().unwrap(),
            &format!("https://localhost:{port}/index.html"),
        ]);
        assert!(ok && body == "hello over tls\n", "{err}");
    }
    let err = srv.stderr();
    if err.contains("no tls module") {
        eprintln!(
            "kTLS test skipped: this kernel has no tls module (TCP_ULP \"tls\": ENOENT); the fallback is what ran"
        );
    }
    assert_eq!(err.matches("--ktls:").count(), 1, "{err}");
    srv.stop();
}

#[test]
fn tls_mistakes_are_one_line_usage_errors() {
    let (code, err) = start_fails(&["echo", "-l", "127.0.0.1:0", "--tls"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs a certificate"), "{err}");
    let (code, err) = start_fails(&["echo", "-l", "127.0.0.1:0", "--tls-self-signed"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no listener speaks TLS"), "{err}");
    let (code, err) = start_fails(&["echo", "-l", "127.0.0.1:0", "--tls", "--tls-sni", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NAME=CERT,KEY"), "{err}");
    let (code, err) = start_fails(&[
        "echo",
        "-l",
        "127.0.0.1:0",
        "--tls",
        "--tls-cert",
        "/nonexistent.pem",
        "--tls-key",
        "/nonexistent.key",
    ]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("/nonexistent.pem"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// A CA and a leaf for localhost/127.0.0.1 signed by it (webpki, unlike curl, refuses a CA
/// certificate as a server's). Returns (ca, leaf cert, leaf key).
fn make_ca_and_leaf(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test ca",
    ]);
    run(&a);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&a);
    std::fs::write(
        dir.join("ext.txt"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.txt",
        "-out",
        "leaf.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

#[test]
fn plumb_connect_tls_verifies_and_says_what_is_wrong_in_one_line() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_ca_and_leaf(dir.path());
    for model in [Model::Event, Model::Thread] {
        let srv = Server::start(&[
            "echo",
            "-l",
            "127.0.0.1:0",
            "--tls",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--model",
            model.name(),
        ]);
        let at = format!("localhost:{}", port_of(srv.addr()));
        let ca = ca.to_str().unwrap();
        let (code, out, err) =
            common::run_plumb(&["connect", "--tls", "--tls-ca", ca, &at], b"ping\n");
        assert_eq!(
            (code, out.as_slice()),
            (0, &b"ping\n"[..]),
            "{model}: {err}"
        );
        // The wrong name: one line that says so.
        let (code, _, err) = common::run_plumb(
            &[
                "connect",
                "--tls",
                "--tls-ca",
                ca,
                "--sni",
                "wrong.test",
                &at,
            ],
            b"ping\n",
        );
        assert_eq!(code, 1, "{model}: {err}");
        assert!(err.contains("not for this name"), "{model}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{model}: {err}");
        // An unknown issuer (the server's own CA not given): one line too.
        let other = tempfile::tempdir().unwrap();
        let (other_ca, _, _) = make_ca_and_leaf(other.path());
        let (code, _, err) = common::run_plumb(
            &[
                "connect",
                "--tls",
                "--tls-ca",
                other_ca.to_str().unwrap(),
                &at,
            ],
            b"ping\n",
        );
        assert_eq!(code, 1, "{model}: {err}");
        assert!(err.contains("not signed by a trusted CA"), "{model}: {err}");
        // --insecure talks to it anyway.
        let (code, out, err) = common::run_plumb(&["connect", "--tls", "--insecure", &at], b"x\n");
        assert_eq!((code, out.as_slice()), (0, &b"x\n"[..]), "{model}: {err}");
        srv.stop();
    }
}
