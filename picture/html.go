package picture

import (
	"bufio"
	"fmt"
	"io"
	"strconv"

	"github.com/uswitch-lab/uswitch/datapath"
)

// PageStyle is the page's own style (the pictures carry theirs).
const PageStyle = `body{font-family:"DejaVu Sans",sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:20px}h2{font-size:15px;margin:18px 0 6px}
section.packet{margin-bottom:28px;border-top:1px solid #ddd;padding-top:6px}
section.packet svg{max-width:100%;height:auto;border:1px solid #e3e5e8}
nav a{margin-right:10px}`

// HTML writes one self-contained page with the pictures of pks, each
// in a section of its own (id "packet-N"), with an index on top. It
// has no script and loads nothing.
func HTML(out io.Writer, l datapath.Layout, title string, pks []Packet) error {
	w := bufio.NewWriter(out)
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>%s</title>\n<style>%s</style></head>\n<body>\n<h1>%s</h1>\n", esc(title), PageStyle, esc(title))
	w.WriteString("<nav>")
	for i := range pks {
		fmt.Fprintf(w, `<a href="#packet-%d">%d</a>`, i+1, i+1)
	}
	w.WriteString("</nav>\n")
	if len(pks) == 0 {
		w.WriteString("<p class=\"empty\">No traced packet (a -j TRACE rule marks packets; --trace-all traces every one).</p>\n")
	}
	for i, pk := range pks {
		fmt.Fprintf(w, "<section class=\"packet\" id=\"packet-%d\">\n<h2>%s</h2>\n", i+1, esc(pk.Summary()))
		if err := svgTo(w, l, pk, Options{IDPrefix: "p" + strconv.Itoa(i+1) + "-"}); err != nil {
			return err
		}
		w.WriteString("</section>\n")
	}
	w.WriteString("</body></html>\n")
	return w.Flush()
}

func svgTo(w *bufio.Writer, l datapath.Layout, pk Packet, opt Options) error {
	pc := &picture{opt: opt, layout: l, nodes: map[string]*node{}, pk: pk}
	pc.build()
	pc.walk()
	pc.draw(w)
	return nil
}
