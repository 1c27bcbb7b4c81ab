package netfilter

import "strings"

// The line reading and word splitting that iptables-restore and
// ebtables-restore share: both are xtables-restore.c (iptables-nft
// 1.8.9), which reads a line with fgets into a fixed buffer, splits a
// rule line into words with add_param_to_argv (xshared.c) and runs the
// words as a command line. The iptables and ebtables loaders give the
// words meaning; this file only cuts them.

// xtables-restore's fixed buffers: a line is read into 10240 bytes, a
// word into 1024 (struct xt_param_buf), a command's words into 255
// pointers (MAX_ARGC) of which argv[0], "-t" and the table name take
// three.
const (
	RestoreLineMax = 10240 - 1
	RestoreWordMax = 1024 - 1
	RestoreWords   = 255 - 1 - 3
)

// NextRestoreLine cuts the next line off s as fgets into xtables-restore's
// buffer does: up to and with its newline, or RestoreLineMax bytes (the
// rest of a longer line is the next line). A C string ends at a NUL, so
// the part of a line after one is never seen: line stops there. rest is
// what follows.
func NextRestoreLine(s string) (line, rest string) {
	lim := min(len(s), RestoreLineMax)
	end := strings.IndexByte(s[:lim], '\n')
	if end < 0 {
		end = lim - 1
	}
	line, rest = s[:end+1], s[end+1:]
	if z := strings.IndexByte(line, 0); z >= 0 {
		line = line[:z]
	}
	return line, rest
}

// SplitWords splits one rule line into words the way add_param_to_argv
// does: words are separated by spaces, tabs and newlines; a double quote
// opens a quoted part in which those are kept and a backslash escapes
// the next character; the closing quote ends the word (so `""` is an
// empty word and `a"b"c` is two words, "ab" and "c"). A quote left open
// runs to the end of the line, its newline included. Single quotes are
// not special, and backslashes outside quotes are kept.
//
// Words without quotes are substrings of line (no copy); only words with
// quotes are assembled.
func SplitWords(line string) []string { return AppendWords(make([]string, 0, 16), line) }

// AppendWords is SplitWords appending to words.
func AppendWords(words []string, line string) []string {
	i := 0
	for i < len(line) {
		c := line[i]
		if c == ' ' || c == '\t' || c == '\n' {
			i++
			continue
		}
		// a plain word: up to a separator or a quote
		start := i
		for i < len(line) && line[i] != ' ' && line[i] != '\t' && line[i] != '\n' && line[i] != '"' {
			i++
		}
		if i == len(line) || line[i] != '"' {
			words = append(words, line[start:i])
			continue
		}
		// the word has a quoted part: assemble it
		buf := []byte(line[start:i])
		i++ // opening quote
		escaped, closed := false, false
		for ; i < len(line); i++ {
			c := line[i]
			switch {
			case escaped:
				buf = append(buf, c)
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				closed = true
			default:
				buf = append(buf, c)
			}
			if closed {
				i++
				break
			}
		}
		if closed || len(buf) > 0 {
			words = append(words, string(buf))
		}
	}
	return words
}

// RestoreWordsError is the message with which add_param_to_argv refuses
// a command line whose words do not fit its buffers, for the first word
// that does not fit ("" when all fit): a word is refused while it is
// read (Parameter too long!), before it would be stored (Parser cannot
// handle more arguments). The first pre words are stored without the
// length check (iptables-restore -c's "--set-counters" words).
func RestoreWordsError(words []string, pre int) string {
	for i, w := range words {
		if i >= pre && len(w) > RestoreWordMax {
			return "Parameter too long!"
		}
		if i >= RestoreWords {
			return "Parser cannot handle more arguments"
		}
	}
	return ""
}

// CutRuleCounters takes the "[pkts:bytes]" a rule line starts with off
// line, as tokenize_rule_counters (xshared.c) does with two strtok calls
// on the line's buffer: pkts is the text after "[" (leading colons
// skipped) up to the next ":", bytes what follows up to the next "]"
// (leading "]"s skipped), and the command starts after the line's first
// "]". strtok writes a NUL where each of the two ends, so when they lie
// after that "]" the command is cut there ("[1] -A x:y" fails, and
// "[1:2 x] -A y]z" runs "-A y"). A line that does not start with "["
// is returned whole. need is "]" or ":" when the prefix is malformed
// ("Bad line N: need ]" and "... need :" in the tools' words), and ""
// otherwise.
func CutRuleCounters(line string) (pkts, bytes, rest, need string) {
	if !strings.HasPrefix(line, "[") {
		return "", "", line, ""
	}
	ptr := strings.IndexByte(line, ']')
	if ptr < 0 {
		return "", "", line, "]"
	}
	// cut is where the command stops: the first NUL strtok writes
	// after ptr
	cut := len(line)
	// strtok(buffer+1, ":")
	i := 1
	for i < len(line) && line[i] == ':' {
		i++
	}
	if i == len(line) {
		return "", "", line, ":"
	}
	start := i
	for i < len(line) && line[i] != ':' {
		i++
	}
	pkts = line[start:i]
	next := len(line)
	if i < len(line) {
		next = i + 1
		if i > ptr {
			cut = min(cut, i)
		}
	}
	// strtok(NULL, "]")
	j := next
	for j < len(line) && line[j] == ']' {
		j++
	}
	if j >= len(line) {
		return "", "", line, "]"
	}
	start = j
	for j < len(line) && line[j] != ']' {
		j++
	}
	bytes = line[start:j]
	if j < len(line) && j > ptr {
		cut = min(cut, j)
	}
	return pkts, bytes, line[ptr+1 : cut], ""
}

// RestoreFields cuts a table or chain line ("*filter", ":CHAIN POLICY
// [p:b]") into fields as xtables-restore's strtok(" \t\n") does: other
// white space (\r, \v, a UTF-8 space such as U+00A0) is part of a field.
func RestoreFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' })
}
