//! Real web servers on the host's loopback for the network tests: plain HTTP
//! and HTTPS with a private test CA, each answering every request with what
//! it received (method, path, headers), so a test sees exactly what reached
//! the server. `GET /bytes/N` answers N zero bytes instead, streamed in
//! 1 MiB frames (for downloads and their benchmarks).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A server running on its own thread until the process ends.
pub struct WebServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The PEM of the CA that signed its certificate (HTTPS only).
    pub ca_pem: Option<String>,
}

impl WebServer {
    /// A plain HTTP server on `ip`, any free port.
    pub fn http(ip: &str) -> WebServer {
        WebServer::start(ip, None)
    }

    /// An HTTPS server on `ip` whose certificate (for that address) a fresh
    /// test CA signed.
    pub fn https(ip: &str) -> WebServer {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "hutch test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![ip.to_owned()]).expect("params").signed_by(&key, &issuer).expect("cert");
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der)
            .expect("server config");
        let mut server = WebServer::start(ip, Some(Arc::new(config)));
        server.ca_pem = Some(ca_cert.pem());
        server
    }

    fn start(ip: &str, tls: Option<Arc<rustls::ServerConfig>>) -> WebServer {
        let ip: IpAddr = ip.parse().expect("an IP address");
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind the test server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    // As real servers do (nginx's tcp_nodelay): without it a
                    // response in two writes waits on the client's delayed ACK.
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let service = service_fn(answer);
                        let builder = hyper::server::conn::http1::Builder::new();
                        let _ = match acceptor {
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(tls) => builder.serve_connection(TokioIo::new(tls), service).await,
                                Err(_) => return,
                            },
                            None => builder.serve_connection(TokioIo::new(stream), service).await,
                        };
                    });
                }
            });
        });
        WebServer { addr, ca_pem: None }
    }

    /// `http(s)://IP:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }
}

type AnyBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(request: Request<Incoming>) -> Result<Response<AnyBody>, Infallible> {
    if let Some(n) = request.uri().path().strip_prefix("/bytes/").and_then(|n| n.parse::<u64>().ok()) {
        return Ok(Response::new(Zeros { left: n }.boxed()));
    }
    let mut text = format!("{} {}\n", request.method(), request.uri());
    for (name, value) in request.headers() {
        text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    Ok(Response::new(Full::new(Bytes::from(text)).boxed()))
}

/// One MiB of zeros, sent again and again without copying.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// A body of `left` zero bytes.
struct Zeros {
    left: u64,
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(ZEROS.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n as usize])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}
