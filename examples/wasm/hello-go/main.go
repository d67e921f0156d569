// A Hearth WebAssembly function in Go (WASI command ABI, GOOS=wasip1 GOARCH=wasm): the request body
// arrives on stdin, the request's method, path, query and headers in CGI environment variables; the
// response is written to stdout as a CGI header block, a blank line, then the body.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
)

func main() {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading the request body:", err)
		os.Exit(1)
	}
	query, _ := url.ParseQuery(os.Getenv("QUERY_STRING"))
	name := query.Get("name")
	if name == "" {
		name = "world"
	}
	fmt.Fprintf(os.Stderr, "%s %s with %d bytes\n", os.Getenv("REQUEST_METHOD"), os.Getenv("PATH_INFO"), len(body))
	answer, _ := json.Marshal(map[string]any{
		"hello":    name,
		"language": "go",
		"method":   os.Getenv("REQUEST_METHOD"),
		"bytes":    len(body),
	})
	fmt.Print("Content-Type: application/json\n\n")
	os.Stdout.Write(answer)
}
