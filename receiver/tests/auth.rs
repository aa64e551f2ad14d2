//! Nothing is public: every path answers 401 without the admin token.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Receiver {
    child: Child,
    addr: String,
    token_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let token_file = dir.path().join("data/admin-token");
        let child = Command::new(env!("CARGO_BIN_EXE_dcmon-receiver"))
            .args([
                "--web.listen-address",
                &addr,
                "--admin-token-file",
                token_file.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "receiver did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Receiver {
            child,
            addr,
            token_file,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("stderr.log")).unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let client = reqwest::blocking::Client::new();
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().unwrap()).unwrap(),
    )
}

#[test]
fn every_path_requires_the_admin_token() {
    let receiver = Receiver::start();
    let token = std::fs::read_to_string(&receiver.token_file).unwrap();
    let token = token.trim();
    assert_eq!(token.len(), 64, "256-bit hex token");
    assert!(
        !receiver.log().contains(token),
        "the token must never be logged"
    );
    assert!(receiver.log().contains("generated a new admin token"));

    for path in [
        "/",
        "/metrics",
        "/api/v1/query",
        "/api/v1/write",
        "/api/dcmon/clients",
    ] {
        let url = format!("http://{}{path}", receiver.addr);
        let (status, body) = get(&url, None);
        assert_eq!(status, 401, "{path} without a token");
        assert_eq!(body["status"], "error");
        assert_eq!(body["errorType"], "unauthorized");
        let (status, _) = get(
            &url,
            Some("not-the-token-but-long-enough-to-be-plausible-0000000000"),
        );
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, body) = get(&url, Some(token));
        assert_eq!(status, 404, "{path} with the admin token reaches routing");
        assert_eq!(body["errorType"], "not_found");
    }
}
