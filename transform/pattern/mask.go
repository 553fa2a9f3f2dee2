package pattern

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Wildcard stands for the variable parts of a message in a template.
const Wildcard = "<*>"

// Bounds on what of a message is clustered. Bytes past maxMessageBytes
// and tokens past maxTokens are ignored, and a token longer than
// maxTokenBytes is masked whole. Masking at most triples a message's
// bytes (a one-byte token can become <*>), so a template is at most about
// 3 × maxMessageBytes long.
const (
	maxMessageBytes = 4096
	maxTokens       = 256
	maxTokenBytes   = 512
)

// Byte classes.
const (
	cSpace    = 1 << iota // ASCII whitespace
	cDigit                // 0-9
	cHex                  // 0-9, a-f, A-F
	cLetter               // A-Z, a-z, and every byte of a multi-byte UTF-8 sequence
	cPunct                // printable ASCII other than letters and digits
	cJoin                 // punctuation that joins two masked runs into one
	cPathEnd              // ends a path or URL inside a token
	cPathLead             // may precede a path inside a token
	cSlow                 // a token holding one needs a closer look
)

const cAlnum = cLetter | cDigit

var classes = func() (t [256]uint16) {
	for _, c := range " \t\n\v\f\r" {
		t[c] = cSpace
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = cDigit | cHex
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = cLetter
		t[c-'a'+'A'] = cLetter
	}
	for _, c := range "abcdefABCDEF" {
		t[c] |= cHex
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = cLetter
	}
	for c := 0x21; c < 0x7f; c++ {
		if t[c] == 0 {
			t[c] = cPunct
		}
	}
	for _, c := range ".:,-_/+@#~" {
		t[c] |= cJoin
	}
	for _, c := range `"'()[]{}<>,;|` {
		t[c] |= cPathEnd
	}
	for _, c := range `"'([{<=:,@` {
		t[c] |= cPathLead
	}
	for _, c := range `/\*` {
		t[c] |= cSlow
	}
	return t
}()

// tokenizer turns messages into masked tokens. It is not modified after
// New, so Miners use it without locking.
type tokenizer struct {
	masks []*regexp.Regexp
	delim [256]bool
}

// scratch holds one message's tokens while it is matched; Miners pool
// them. A token is a substring of the message, Wildcard, or a substring
// of the string made from buf when the token was partly masked.
type scratch struct {
	toks []string
	glue []bool // glue[i]: toks[i] followed toks[i-1] without whitespace
	buf  []byte
	pend []pending // partly masked tokens, set from buf once it is final
}

type pending struct{ i, start, end int }

// tokenize fills s with the masked tokens of msg: runs of non-whitespace
// split further at the delimiters, which are tokens of their own. A
// token that is all wildcard right after another is dropped, so that a
// variable spanning several tokens (a date, a list of numbers) does not
// change the token count.
func (t *tokenizer) tokenize(msg string, s *scratch) {
	s.toks, s.glue, s.buf, s.pend = s.toks[:0], s.glue[:0], s.buf[:0], s.pend[:0]
	if len(msg) > maxMessageBytes {
		msg = msg[:maxMessageBytes]
	}
	if len(t.masks) > 0 {
		for _, re := range t.masks {
			if re.FindStringIndex(msg) != nil {
				msg = re.ReplaceAllLiteralString(msg, Wildcard)
			}
		}
		if len(msg) > maxMessageBytes {
			msg = msg[:maxMessageBytes]
		}
	}
	space := true
	for i := 0; i < len(msg) && len(s.toks) < maxTokens; {
		c := msg[i]
		if classes[c]&cSpace != 0 {
			space = true
			i++
			continue
		}
		j := i + 1
		if !t.delim[c] {
			for j < len(msg) && classes[msg[j]]&cSpace == 0 && !t.delim[msg[j]] {
				j++
			}
		}
		s.glue = append(s.glue, !space)
		s.toks = append(s.toks, "")
		s.maskToken(len(s.toks)-1, msg[i:j])
		if n := len(s.toks); n > 1 && s.toks[n-1] == Wildcard && s.toks[n-2] == Wildcard {
			s.toks, s.glue = s.toks[:n-1], s.glue[:n-1]
		}
		space = false
		i = j
	}
	if len(s.glue) > 0 {
		s.glue[0] = false
	}
	if len(s.pend) > 0 {
		str := string(s.buf)
		for _, p := range s.pend {
			s.toks[p.i] = str[p.start:p.end]
		}
	}
}

// maskToken sets token i to tok with its variable parts masked, as
// listed at Miner.Match.
func (s *scratch) maskToken(i int, tok string) {
	var seen uint16
	dots := 0
	for k := 0; k < len(tok); k++ {
		seen |= classes[tok[k]]
		if tok[k] == '.' {
			dots++
		}
	}
	switch {
	case len(tok) > maxTokenBytes:
		s.toks[i] = Wildcard
		return
	case seen&cLetter != 0 && !isASCII(tok) && !utf8.ValidString(tok):
		s.toks[i] = Wildcard
		return
	case seen&(cDigit|cSlow) == 0 && dots < 2:
		if len(tok) == 3 && isDateWord(tok) {
			s.toks[i] = Wildcard
		} else {
			s.toks[i] = tok
		}
		return
	}
	start := len(s.buf)
	lastVar := -1 // len(s.buf) right after the last <*> written, or -1
	for k := 0; k < len(tok); {
		c := tok[k]
		if classes[c]&cAlnum == 0 {
			if c == '<' && strings.HasPrefix(tok[k:], Wildcard) {
				s.writeVar(&lastVar)
				k += len(Wildcard)
				continue
			}
			if n := pathLen(tok, k); n > 0 {
				s.writeVar(&lastVar)
				k += n
				continue
			}
			s.buf = append(s.buf, c)
			k++
			continue
		}
		if k == 0 || tok[k-1] != '_' && tok[k-1] != '.' && tok[k-1] != '-' {
			if isUUID(tok[k:]) {
				s.writeVar(&lastVar)
				k += 36
				continue
			}
			if n := hostLen(tok[k:]); n > 0 {
				s.writeVar(&lastVar)
				k += n
				continue
			}
		}
		j, digit := k, false
		for j < len(tok) && classes[tok[j]]&cAlnum != 0 {
			digit = digit || classes[tok[j]]&cDigit != 0
			j++
		}
		if j+1 < len(tok) && tok[j] == ':' && (tok[j+1] == '\\' || strings.HasPrefix(tok[j+1:], "//")) {
			// A Windows drive (C:\...) or a URL scheme (http://...).
			if n := pathLen(tok, j+1); n > 0 || tok[j+1] == '/' {
				s.writeVar(&lastVar)
				k = j + 1 + max(n, urlLen(tok, j+1))
				continue
			}
		}
		if !digit {
			s.buf = append(s.buf, tok[k:j]...)
			lastVar = -1
			k = j
			continue
		}
		// A sign belongs to the number if nothing alphanumeric precedes it.
		if k > 0 && (tok[k-1] == '-' || tok[k-1] == '+') && classes[c]&cDigit != 0 &&
			(k == 1 || classes[tok[k-2]]&cAlnum == 0) && len(s.buf) > start {
			s.buf = s.buf[:len(s.buf)-1]
		}
		s.writeVar(&lastVar)
		k = j
	}
	switch out := s.buf[start:]; string(out) {
	case Wildcard:
		s.buf = s.buf[:start]
		s.toks[i] = Wildcard
	case tok:
		s.buf = s.buf[:start]
		s.toks[i] = tok
	default:
		s.pend = append(s.pend, pending{i, start, len(s.buf)})
	}
}

// writeVar appends <*> to buf, or, if only joining punctuation follows
// the last <*>, drops that punctuation instead.
func (s *scratch) writeVar(lastVar *int) {
	if *lastVar >= 0 {
		joined := true
		for _, c := range s.buf[*lastVar:] {
			if classes[c]&cJoin == 0 {
				joined = false
				break
			}
		}
		if joined {
			s.buf = s.buf[:*lastVar]
			return
		}
	}
	s.buf = append(s.buf, Wildcard...)
	*lastVar = len(s.buf)
}

// pathLen returns the length of the path starting at tok[k], or 0. A path
// starts with '/' or '\' at the start of the token or after punctuation
// such as '=' or '(', holds at least two of them and a letter or digit,
// and ends before a quote, bracket, ',', ';' or '|'.
func pathLen(tok string, k int) int {
	sep := tok[k]
	if sep != '/' && sep != '\\' {
		return 0
	}
	if k > 0 && classes[tok[k-1]]&cPathLead == 0 && tok[k-1] != sep {
		return 0
	}
	n, j, alnum := 0, k, false
	for ; j < len(tok) && classes[tok[j]]&cPathEnd == 0; j++ {
		if tok[j] == sep {
			n++
		}
		alnum = alnum || classes[tok[j]]&cAlnum != 0
	}
	if n < 2 || !alnum {
		return 0
	}
	return j - k
}

// urlLen returns the length of the rest of a URL starting at tok[k].
func urlLen(tok string, k int) int {
	j := k
	for j < len(tok) && classes[tok[j]]&cPathEnd == 0 {
		j++
	}
	return j - k
}

// hostLen returns the length of the host name, or host and port, that
// tok starts with, or 0: dot-separated labels of ASCII letters, digits
// and '-', followed by ":port", or at least three labels of which the
// last looks like a top-level domain.
func hostLen(tok string) int {
	labels, j, last := 0, 0, 0
	for {
		start := j
		for j < len(tok) && (classes[tok[j]]&cAlnum != 0 && tok[j] < 0x80 || tok[j] == '-') {
			j++
		}
		if j == start {
			return 0
		}
		labels++
		last = start
		if j+1 < len(tok) && tok[j] == '.' && classes[tok[j+1]]&cAlnum != 0 {
			j++
			continue
		}
		break
	}
	if j < len(tok) && tok[j] == '_' {
		return 0
	}
	if labels >= 2 && j+1 < len(tok) && tok[j] == ':' && classes[tok[j+1]]&cDigit != 0 {
		p := j + 1
		for p < len(tok) && classes[tok[p]]&cDigit != 0 {
			p++
		}
		if p == len(tok) || classes[tok[p]]&cAlnum == 0 {
			return p
		}
	}
	if labels >= 3 && isTLD(tok[last:j]) {
		return j
	}
	return 0
}

// isTLD reports whether label looks like a top-level domain: two
// lower-case letters or a common generic one.
func isTLD(label string) bool {
	switch label {
	case "com", "net", "org", "edu", "gov", "mil", "int", "info", "biz", "local", "arpa":
		return true
	}
	return len(label) == 2 && 'a' <= label[0] && label[0] <= 'z' && 'a' <= label[1] && label[1] <= 'z'
}

// isUUID reports whether s starts with a UUID (8-4-4-4-12 hex digits)
// that no further letter or digit follows.
func isUUID(s string) bool {
	if len(s) < 36 || len(s) > 36 && classes[s[36]]&cAlnum != 0 {
		return false
	}
	for i := 0; i < 36; i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if classes[s[i]]&cHex == 0 {
				return false
			}
		}
	}
	return true
}

// isDateWord reports whether w is an English month or weekday
// abbreviation as timestamps spell them.
func isDateWord(w string) bool {
	switch w {
	case "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
		"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun":
		return true
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
