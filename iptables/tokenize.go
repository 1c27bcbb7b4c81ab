package iptables

// SplitWords splits one iptables-restore rule line into words the way
// iptables' add_param_to_argv (iptables/xshared.c) does: words are
// separated by spaces, tabs and newlines; a double quote opens a quoted
// part in which spaces are kept and a backslash escapes the next
// character; the closing quote ends the word (so `""` is an empty word).
// Single quotes are not special, and backslashes outside quotes are kept.
//
// Words without quotes are substrings of line (no copy); only words with
// quotes are assembled.
func SplitWords(line string) []string { return appendWords(make([]string, 0, 16), line) }

// appendWords is SplitWords appending to words.
func appendWords(words []string, line string) []string {
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
