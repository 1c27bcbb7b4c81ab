package rules

import "strings"

// SplitWords splits one iptables-restore rule line into words the way
// iptables' add_param_to_argv (iptables/xshared.c) does: words are
// separated by spaces, tabs and newlines; a double quote opens a quoted
// part in which spaces are kept and a backslash escapes the next
// character; the closing quote ends the word (so `""` is an empty word).
// Single quotes are not special, and backslashes outside quotes are kept.
func SplitWords(line string) []string {
	var words []string
	var cur strings.Builder
	inQuote, escaped := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		if inQuote {
			switch {
			case escaped:
				cur.WriteByte(c)
				escaped = false
				continue
			case c == '\\':
				escaped = true
				continue
			case c != '"':
				cur.WriteByte(c)
				continue
			}
			// closing quote: ends the word
			inQuote = false
			words = append(words, cur.String())
			cur.Reset()
			continue
		}
		switch c {
		case '"':
			inQuote = true
		case ' ', '\t', '\n':
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words
}
