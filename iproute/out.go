package iproute

import (
	"strconv"
	"strings"
)

// obj is one object printed the way iproute2's print_* helpers
// (lib/json_print.c) print it: in text mode the fp formats, in JSON mode
// the key with its value, compact, in the order the fields are printed.
// One obj serves both modes so the two outputs cannot drift apart.
type obj struct {
	json  bool
	b     strings.Builder
	first bool // JSON: no field written yet in the innermost object
}

func newObj(json bool) *obj { return &obj{json: json, first: true} }

func (o *obj) key(k string) {
	if !o.first {
		o.b.WriteByte(',')
	}
	o.first = false
	if k != "" {
		o.b.WriteString(jsonString(k))
		o.b.WriteByte(':')
	}
}

// str prints a string: text is the fp format's output.
func (o *obj) str(k, v, text string) {
	if o.json {
		if k != "" {
			o.key(k)
			o.b.WriteString(jsonString(v))
		}
		return
	}
	o.b.WriteString(text)
}

// uint prints a number.
func (o *obj) uint(k string, v uint64, text string) {
	if o.json {
		if k != "" {
			o.key(k)
			o.b.WriteString(strconv.FormatUint(v, 10))
		}
		return
	}
	o.b.WriteString(text)
}

// int prints a signed number.
func (o *obj) int(k string, v int64, text string) {
	if o.json {
		if k != "" {
			o.key(k)
			o.b.WriteString(strconv.FormatInt(v, 10))
		}
		return
	}
	o.b.WriteString(text)
}

// null prints a JSON null (print_null): a flag such as "not".
func (o *obj) null(k, text string) {
	if o.json {
		o.key(k)
		o.b.WriteString("null")
		return
	}
	o.b.WriteString(text)
}

// text is fp-only output.
func (o *obj) text(s string) {
	if !o.json {
		o.b.WriteString(s)
	}
}

// strList prints a JSON array of strings (flags, cache); text is the
// fp output.
func (o *obj) strList(k string, vs []string, text string) {
	if !o.json {
		o.b.WriteString(text)
		return
	}
	o.key(k)
	o.b.WriteByte('[')
	for i, v := range vs {
		if i > 0 {
			o.b.WriteByte(',')
		}
		o.b.WriteString(jsonString(v))
	}
	o.b.WriteByte(']')
}

// open starts a nested object (k "" in an array) or array.
func (o *obj) open(k string, array bool) {
	if !o.json {
		return
	}
	o.key(k)
	if array {
		o.b.WriteByte('[')
	} else {
		o.b.WriteByte('{')
	}
	o.first = true
}

func (o *obj) close(array bool) {
	if !o.json {
		return
	}
	if array {
		o.b.WriteByte(']')
	} else {
		o.b.WriteByte('}')
	}
	o.first = false
}

// jsonString quotes s as lib/json_writer.c jsonw_puts does.
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\f':
			b.WriteString(`\f`)
		case '\b':
			b.WriteString(`\b`)
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// list prints objects as ip does: in text one after another, in JSON
// an array of them and a newline (new_json_obj / delete_json_obj).
func list(json bool, objs []string) string {
	if !json {
		return strings.Join(objs, "")
	}
	return "[" + strings.Join(objs, ",") + "]\n"
}
