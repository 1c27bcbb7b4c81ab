// Package browser drives a headless Chromium (Debian's chromium
// package) for tests of the pages and pictures uswitch makes: open a
// page, evaluate JavaScript in it (DOM checks), take a screenshot, and
// collect what it reported as errors (console.error, uncaught
// exceptions, failed loads). It speaks the DevTools protocol over
// --remote-debugging-pipe (file descriptors 3 and 4, messages ended by
// a NUL byte), so it needs no port, no WebSocket and no library.
package browser

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Program is the browser program Start runs.
const Program = "chromium"

// Browser is a running headless browser.
type Browser struct {
	cmd  *exec.Cmd
	w    *os.File
	mu   sync.Mutex // guards next, waits, errs
	next int
	// waits are the callers waiting for the answer of a message id
	waits map[int]chan reply
	// errs are the error reports of each session
	errs map[string][]string
	done chan struct{}
	dir  string
}

type reply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

type message struct {
	ID        int             `json:"id"`
	Method    string          `json:"method"`
	Params    json.RawMessage `json:"params"`
	SessionID string          `json:"sessionId"`
	reply
}

// Start starts a headless browser with a profile folder of its own.
func Start() (*Browser, error) {
	path, err := exec.LookPath(Program)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "uswitch-browser-")
	if err != nil {
		return nil, err
	}
	// the browser reads commands from fd 3 and writes to fd 4
	cr, cw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	rr, rw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
		"--user-data-dir="+dir, "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
		"--disable-extensions", "--mute-audio", "about:blank")
	cmd.ExtraFiles = []*os.File{cr, rw}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cr.Close()
	rw.Close()
	b := &Browser{cmd: cmd, w: cw, waits: map[int]chan reply{}, errs: map[string][]string{}, done: make(chan struct{}), dir: dir}
	go b.read(rr)
	return b, nil
}

// Close ends the browser and removes its profile.
func (b *Browser) Close() {
	b.w.Close()
	if b.cmd.Process != nil {
		b.cmd.Process.Kill()
	}
	b.cmd.Wait()
	os.RemoveAll(b.dir)
}

func (b *Browser) read(r *os.File) {
	defer close(b.done)
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m message
		if json.Unmarshal(line[:len(line)-1], &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch := b.waits[m.ID]; ch != nil {
				ch <- m.reply
				delete(b.waits, m.ID)
			}
		} else if e := errorOf(m.Method, m.Params); e != "" {
			b.errs[m.SessionID] = append(b.errs[m.SessionID], e)
		}
		b.mu.Unlock()
	}
}

// errorOf is the error an event reports, "" for none.
func errorOf(method string, params json.RawMessage) string {
	switch method {
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		json.Unmarshal(params, &p)
		if p.Type != "error" && p.Type != "assert" {
			return ""
		}
		s := "console." + p.Type + ":"
		for _, a := range p.Args {
			if a.Description != "" {
				s += " " + a.Description
			} else {
				s += fmt.Sprintf(" %v", a.Value)
			}
		}
		return s
	case "Runtime.exceptionThrown":
		var p struct {
			Details struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		json.Unmarshal(params, &p)
		return "exception: " + p.Details.Text + " " + p.Details.Exception.Description
	case "Log.entryAdded":
		var p struct {
			Entry struct {
				Level  string `json:"level"`
				Text   string `json:"text"`
				URL    string `json:"url"`
				Source string `json:"source"`
			} `json:"entry"`
		}
		json.Unmarshal(params, &p)
		if p.Entry.Level != "error" {
			return ""
		}
		return "log " + p.Entry.Source + ": " + p.Entry.Text + " " + p.Entry.URL
	}
	return ""
}

// call sends a command (in session, "" for the browser) and waits for
// its answer.
func (b *Browser) call(session, method string, params any, result any) error {
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan reply, 1)
	b.waits[id] = ch
	b.mu.Unlock()
	m := map[string]any{"id": id, "method": method}
	if params != nil {
		m["params"] = params
	}
	if session != "" {
		m["sessionId"] = session
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := b.w.Write(append(data, 0)); err != nil {
		return fmt.Errorf("browser: %s: %v", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return fmt.Errorf("browser: %s: %s", method, r.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(r.Result, result)
		}
		return nil
	case <-b.done:
		return fmt.Errorf("browser: %s: the browser ended", method)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("browser: %s: no answer in 30s", method)
	}
}

// Page is a tab.
type Page struct {
	b       *Browser
	session string
}

// Open opens url in a new tab of the given size and waits for its load
// event.
func (b *Browser) Open(url string, width, height int) (*Page, error) {
	var t struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &t); err != nil {
		return nil, err
	}
	var s struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call("", "Target.attachToTarget", map[string]any{"targetId": t.TargetID, "flatten": true}, &s); err != nil {
		return nil, err
	}
	p := &Page{b: b, session: s.SessionID}
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		if err := b.call(p.session, m, nil, nil); err != nil {
			return nil, err
		}
	}
	if err := b.call(p.session, "Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		return nil, err
	}
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	if err := b.call(p.session, "Page.navigate", map[string]any{"url": url}, &nav); err != nil {
		return nil, err
	}
	if nav.ErrorText != "" {
		return nil, fmt.Errorf("browser: %s: %s", url, nav.ErrorText)
	}
	// the load event: document.readyState complete
	deadline := time.Now().Add(20 * time.Second)
	for {
		var state string
		if err := p.Eval(`document.readyState`, &state); err == nil && state == "complete" {
			return p, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.New("browser: " + url + " did not finish loading in 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Eval evaluates a JavaScript expression in the page and stores its
// value (JSON) in result (nil: ignored). A promise is awaited.
func (p *Page) Eval(expr string, result any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := p.b.call(p.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("browser: %s: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if result != nil && len(r.Result.Value) > 0 {
		return json.Unmarshal(r.Result.Value, result)
	}
	return nil
}

// Screenshot is a PNG of the whole page (beyond the window when it is
// longer).
func (p *Page) Screenshot() ([]byte, error) {
	var r struct {
		Data string `json:"data"`
	}
	if err := p.b.call(p.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(r.Data)
}

// Errors are the errors the page reported so far: console.error and
// console.assert calls, uncaught exceptions, log entries of level error
// (a failed load, a refused script).
func (p *Page) Errors() []string {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	return append([]string(nil), p.b.errs[p.session]...)
}
