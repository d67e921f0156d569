//! A Hearth WebAssembly function (WASI command ABI): the request body is on stdin, the method, path, query
//! and headers are CGI variables (REQUEST_METHOD, PATH_INFO, QUERY_STRING, HTTP_*); the answer is a header
//! block, a blank line and the body, on stdout. `Status: 404` sets the status.
use std::env;
use std::io::{self, Read, Write};

fn main() {
    let mut body = String::new();
    io::stdin().read_to_string(&mut body).ok();
    let query = env::var("QUERY_STRING").unwrap_or_default();
    let name = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("name="))
        .unwrap_or("world")
        .replace(|c: char| c == '"' || c == '\\' || c.is_control(), "");
    eprintln!("greeting {name}");
    let mut out = io::stdout().lock();
    write!(out, "Content-Type: application/json\n\n{{\"hello\":\"{name}\"}}").unwrap();
}
