//! A Hearth WebAssembly function (WASI command ABI): the request body arrives on stdin, the request's
//! method, path, query and headers in CGI environment variables; the response is written to stdout as
//! a CGI header block, a blank line, then the body.
use std::env;
use std::io::{self, Read, Write};

fn main() {
    let mut body = Vec::new();
    io::stdin().read_to_end(&mut body).expect("read the request body");
    let method = env::var("REQUEST_METHOD").unwrap_or_default();
    let path = env::var("PATH_INFO").unwrap_or_default();
    let query = env::var("QUERY_STRING").unwrap_or_default();
    let name = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("name="))
        .unwrap_or("world");
    let greeting = env::var("GREETING").unwrap_or_else(|_| "hello".to_string());
    eprintln!("{method} {path} with {} bytes", body.len());
    let mut out = io::stdout().lock();
    write!(
        out,
        "Content-Type: application/json\n\n{{\"{greeting}\":\"{}\",\"method\":\"{method}\",\"bytes\":{}}}",
        escape(name),
        body.len()
    )
    .expect("write the response");
}

/// Enough JSON string escaping for a name taken from the query string.
fn escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c if (c as u32) < 0x20 => vec![],
            c => vec![c],
        })
        .collect()
}
