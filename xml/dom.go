package netxml

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// docName is what libvirt calls an XML document given as a string; it shows up
// in syntax errors: "(network_definition):4: Opening and ending tag mismatch …".
const docName = "(network_definition)"

// DnsmasqNS is the namespace URI of libvirt's dnsmasq options extension.
const DnsmasqNS = "http://libvirt.org/schemas/network/dnsmasq/1.0"

// elem is one element of a parsed document. Names are raw: prefix and local
// part as written; uri is the namespace the prefix resolves to.
type elem struct {
	prefix, local string
	uri           string
	attrs         []xml.Attr // as written (Name.Space is the prefix)
	items         []item     // children and text in document order
	line          int
	parent        *elem
	nsDecl        map[string]string // prefix ("" = default) → URI declared on this element
}

// item is a child element or a run of character data.
type item struct {
	el   *elem
	text string
}

// lookupNS resolves a prefix in scope of e ("" = default namespace).
func (e *elem) lookupNS(prefix string) (string, bool) {
	switch prefix {
	case "xml":
		return "http://www.w3.org/XML/1998/namespace", true
	case "xmlns":
		return "http://www.w3.org/2000/xmlns/", true
	}
	for p := e; p != nil; p = p.parent {
		if u, ok := p.nsDecl[prefix]; ok {
			return u, true
		}
	}
	return "", prefix == ""
}

// attr returns the value of an attribute without prefix.
func (e *elem) attr(name string) (string, bool) {
	for _, a := range e.attrs {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// kids returns the child elements in no namespace with the given local name.
func (e *elem) kids(local string) []*elem {
	var out []*elem
	for _, it := range e.items {
		if it.el != nil && it.el.prefix == "" && it.el.uri == "" && it.el.local == local {
			out = append(out, it.el)
		}
	}
	return out
}

// first returns the first child element named local, or nil (XPath "./local[1]").
func (e *elem) first(local string) *elem {
	for _, it := range e.items {
		if it.el != nil && it.el.prefix == "" && it.el.uri == "" && it.el.local == local {
			return it.el
		}
	}
	return nil
}

// text returns the string value of e (all descendant text, XPath string()).
func (e *elem) text() string {
	var b strings.Builder
	var walk func(*elem)
	walk = func(x *elem) {
		for _, it := range x.items {
			if it.el != nil {
				walk(it.el)
			} else {
				b.WriteString(it.text)
			}
		}
	}
	walk(e)
	return b.String()
}

func (e *elem) qname() string {
	if e.prefix != "" {
		return e.prefix + ":" + e.local
	}
	return e.local
}

// parseDoc parses data into an element tree, reporting syntax errors the way
// libvirt shows libxml2's: "(network_definition):LINE: MESSAGE", then the
// offending line and a caret under the position.
func parseDoc(data []byte) (*elem, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark, as libxml2 accepts
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, Errorf(KindPlain, "%s:%d: Document is empty\n(null)\n^", docName, 1+bytes.Count(data, []byte("\n")))
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var root, cur *elem
	done := false
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		line, col := d.InputPos()
		if err != nil {
			var se *xml.SyntaxError
			msg := err.Error()
			if errors.As(err, &se) {
				msg = se.Msg
				line = se.Line
				if msg == "unexpected EOF" && cur != nil {
					msg = fmt.Sprintf("Premature end of data in tag %s line %d", cur.qname(), cur.line)
				}
			}
			return nil, syntaxError(data, line, col, msg)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if done {
				return nil, syntaxError(data, line, col, "Extra content at the end of the document")
			}
			e := &elem{prefix: t.Name.Space, local: t.Name.Local, line: line, parent: cur}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "xmlns":
					if e.nsDecl == nil {
						e.nsDecl = map[string]string{}
					}
					e.nsDecl[a.Name.Local] = a.Value
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					if e.nsDecl == nil {
						e.nsDecl = map[string]string{}
					}
					e.nsDecl[""] = a.Value
				}
				e.attrs = append(e.attrs, a)
			}
			u, ok := e.lookupNS(e.prefix)
			if !ok {
				return nil, syntaxError(data, line, col, fmt.Sprintf("Namespace prefix %s on %s is not defined", e.prefix, e.local))
			}
			e.uri = u
			if cur == nil {
				root = e
			} else {
				cur.items = append(cur.items, item{el: e})
			}
			cur = e
		case xml.EndElement:
			name := t.Name.Local
			if t.Name.Space != "" {
				name = t.Name.Space + ":" + name
			}
			if cur == nil {
				return nil, syntaxError(data, line, col, "Extra content at the end of the document")
			}
			if name != cur.qname() {
				return nil, syntaxError(data, line, col, fmt.Sprintf("Opening and ending tag mismatch: %s line %d and %s", cur.qname(), cur.line, name))
			}
			cur = cur.parent
			if cur == nil {
				done = true
			}
		case xml.CharData:
			if cur == nil {
				if len(bytes.TrimSpace(t)) > 0 {
					if done {
						return nil, syntaxError(data, line, col, "Extra content at the end of the document")
					}
					return nil, syntaxError(data, line, col, "Start tag expected, '<' not found")
				}
				continue
			}
			cur.items = append(cur.items, item{text: string(t)})
		}
	}
	if cur != nil {
		line, col := d.InputPos()
		return nil, syntaxError(data, line, col, fmt.Sprintf("Premature end of data in tag %s line %d", cur.qname(), cur.line))
	}
	if root == nil {
		return nil, Errorf(KindPlain, "%s:%d: Document is empty\n(null)\n^", docName, 1)
	}
	return root, nil
}

// syntaxError formats a libxml2-style error with the source line and a caret.
func syntaxError(data []byte, line, col int, msg string) error {
	lines := strings.Split(string(data), "\n")
	ctx := ""
	if line >= 1 && line <= len(lines) {
		ctx = strings.TrimRight(lines[line-1], "\r")
	}
	if len(ctx) > 80 {
		ctx = ctx[:80]
	}
	if col < 1 {
		col = 1
	}
	if col-1 > len(ctx) {
		col = len(ctx) + 1
	}
	return Errorf(KindPlain, "%s:%d: %s\n%s\n%s^", docName, line, msg, ctx, strings.Repeat("-", col-1))
}
