package web

import (
	"bufio"
	"fmt"
	"html"
	"net/http"

	"github.com/uswitch-lab/uswitch/picture"
)

const pageStyle = `
.grid{display:flex;flex-wrap:wrap;gap:18px}
.card{border:1px solid #d8dbe0;border-radius:6px;padding:8px 12px;background:#fafbfc}
table{border-collapse:collapse;font-size:12px}
td,th{border-bottom:1px solid #e3e5e8;padding:2px 6px;text-align:left;vertical-align:top}
td.n{text-align:right;font-family:"DejaVu Sans Mono",monospace}
td.rule{font-family:"DejaVu Sans Mono",monospace;font-size:11px}
tr.changed td.n{background:#fff3bf}
pre{font-size:11px;max-height:320px;overflow:auto;background:#f6f7f9;padding:6px}
#status{font-size:12px;color:#666}
`

// pageScript updates the page from the event stream: counters by row
// id, the conntrack table, the pictures.
const pageScript = `
(function () {
  const status = document.getElementById('status');
  const es = new EventSource('events');
  es.addEventListener('state', function (ev) {
    const st = JSON.parse(ev.data);
    for (const c of st.counters) {
      const row = document.querySelector('tr[data-id="' + CSS.escape(c.id) + '"]');
      if (!row) continue;
      const p = row.querySelector('td.pkts'), b = row.querySelector('td.bytes');
      const was = p.textContent;
      p.textContent = String(c.packets);
      b.textContent = String(c.bytes);
      row.classList.toggle('changed', was !== String(c.packets));
    }
    document.getElementById('conntrack').textContent = st.conntrack || '(empty)';
    document.body.dataset.updates = String(Number(document.body.dataset.updates || '0') + 1);
    status.textContent = 'live: updated ' + new Date().toLocaleTimeString();
  });
  es.addEventListener('packets', function (ev) {
    const list = JSON.parse(ev.data) || [];
    const box = document.getElementById('packets');
    if (list.length === 0) return;
    box.innerHTML = '';
    for (const p of list.slice().reverse()) {
      const s = document.createElement('section');
      s.className = 'packet';
      s.dataset.n = String(p.n);
      const h = document.createElement('h2');
      h.textContent = p.summary;
      s.appendChild(h);
      const d = document.createElement('div');
      d.innerHTML = p.svg;
      s.appendChild(d);
      box.appendChild(s);
    }
  });
  es.onerror = function () { status.textContent = 'disconnected: the lab stopped?'; };
})();
`

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// nothing but the page itself: no script or style from elsewhere
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:")
	b := bufio.NewWriter(w)
	defer b.Flush()
	top := s.src.Topology
	e := html.EscapeString
	fmt.Fprintf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>uswitch lab %s</title>\n<style>%s%s</style></head>\n<body data-updates=\"0\">\n", e(top.Name), picture.PageStyle, pageStyle)
	fmt.Fprintf(b, "<h1>uswitch lab %s</h1>\n<p id=\"status\">loading…</p>\n", e(top.Name))
	b.WriteString("<h2>Topology</h2>\n<div class=\"grid\" id=\"topology\">\n")
	b.WriteString("<div class=\"card\" id=\"uswitch\"><b>uswitch</b><table><tr><th>device</th><th>kind</th><th>addresses</th><th>namespace</th></tr>\n")
	for _, i := range top.Interfaces {
		addrs := join(i.Addresses)
		if i.Bridge != "" {
			addrs = "port of " + i.Bridge
		}
		fmt.Fprintf(b, "<tr class=\"iface\" data-name=\"%s\"><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", e(i.Name), e(i.Name), e(i.Kind), e(addrs), e(i.Netns))
	}
	b.WriteString("</table>")
	for _, br := range top.Bridges {
		fmt.Fprintf(b, "<p class=\"bridge\" data-name=\"%s\">bridge <b>%s</b> %s, ports %s</p>", e(br.Name), e(br.Name), e(join(br.Addresses)), e(join(br.Ports)))
	}
	b.WriteString("</div>\n")
	for _, n := range top.Namespaces {
		fmt.Fprintf(b, "<div class=\"card ns\" data-name=\"%s\"><b>%s</b><br>%s", e(n.Name), e(n.Name), e(join(n.Addresses)))
		for _, r := range n.Routes {
			fmt.Fprintf(b, "<br>route %s", e(r))
		}
		for _, sv := range n.Servers {
			fmt.Fprintf(b, "<br>serves %s", e(sv))
		}
		b.WriteString("</div>\n")
	}
	b.WriteString("</div>\n")
	st := s.state(true)
	b.WriteString("<h2>Rules and their counters</h2>\n<div class=\"card\"><table id=\"counters\"><tr><th>table</th><th>chain</th><th>#</th><th>rule</th><th>packets</th><th>bytes</th></tr>\n")
	for _, c := range st.Counters {
		n := "policy"
		if c.Rule > 0 {
			n = fmt.Sprint(c.Rule)
		}
		fmt.Fprintf(b, "<tr data-id=\"%s\"><td>%s</td><td>%s</td><td>%s</td><td class=\"rule\">%s</td><td class=\"n pkts\">%d</td><td class=\"n bytes\">%d</td></tr>\n",
			e(c.ID), e(c.Table), e(c.Chain), n, e(c.Text), c.Packets, c.Bytes)
	}
	b.WriteString("</table></div>\n<h2>Conntrack</h2>\n<pre id=\"conntrack\">")
	b.WriteString(e(st.Conntrack))
	b.WriteString("</pre>\n<h2>Last traced packets</h2>\n<p>Packets a -j TRACE rule marks, and one other packet every 200 ms, newest first.</p>\n<div id=\"packets\">")
	for i := len(st.Packets) - 1; i >= 0; i-- {
		p := st.Packets[i]
		fmt.Fprintf(b, "<section class=\"packet\" data-n=\"%d\"><h2>%s</h2><div>%s</div></section>\n", p.N, e(p.Summary), p.SVG)
	}
	b.WriteString("</div>\n<script>")
	b.WriteString(pageScript)
	b.WriteString("</script>\n</body></html>\n")
}
