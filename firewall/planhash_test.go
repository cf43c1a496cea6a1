package firewall

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// TestPlanHash: equal rules hash equal (also when their strings are
// separate copies), a change of any field of a rule changes the hash, and a
// repeated rule is not the rule once.
func TestPlanHash(t *testing.T) {
	// rule sets every field, found by reflection, to its first test value.
	rule := func() Rule {
		var r Rule
		for _, f := range ruleLeaves(t) {
			f.set(&r, 0)
		}
		return r
	}
	a := &Plan{Rules: []Rule{rule()}}
	b := &Plan{Rules: []Rule{rule()}}
	b.Rules[0].Bridge = strings.Clone(a.Rules[0].Bridge)
	if planHash(a) != planHash(b) {
		t.Fatal("equal plans hash differently")
	}
	for _, f := range ruleLeaves(t) {
		r := rule()
		f.set(&r, 1)
		if planHash(&Plan{Rules: []Rule{r}}) == planHash(a) {
			t.Errorf("a change of %s (%+v) hashes as the original", f.name, r)
		}
	}
	if planHash(&Plan{Rules: append(a.Rules, a.Rules...)}) == planHash(a) {
		t.Error("a repeated rule hashes as one")
	}
}

// ruleLeaf is one field of Rule, nested structs flattened.
type ruleLeaf struct {
	name  string
	index []int
	typ   reflect.Type
}

// set gives the field its i-th test value (0 or 1, always different).
func (f ruleLeaf) set(r *Rule, i int) {
	v := reflect.ValueOf(r).Elem().FieldByIndex(f.index)
	if vals, ok := leafValues[f.typ]; ok {
		v.Set(reflect.ValueOf(vals[i]))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString([]string{"virbr1", "virbr2"}[i])
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(i + 1))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(i + 1))
	case reflect.Bool:
		v.SetBool(i == 1)
	}
}

// leafValues are the test values of struct types set as a whole (their
// fields are unexported).
var leafValues = map[reflect.Type][2]any{
	reflect.TypeFor[netip.Prefix](): {netip.MustParsePrefix("10.1.2.0/24"), netip.MustParsePrefix("10.1.3.0/24")},
	reflect.TypeFor[netip.Addr]():   {netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")},
}

// ruleLeaves lists every field of Rule, descending into nested structs, so
// that a field added later is covered without touching the test. A field of
// a type the test cannot set fails it.
func ruleLeaves(t *testing.T) []ruleLeaf {
	t.Helper()
	var leaves []ruleLeaf
	var walk func(typ reflect.Type, prefix string, index []int)
	walk = func(typ reflect.Type, prefix string, index []int) {
		for i := range typ.NumField() {
			sf := typ.Field(i)
			idx := append(append([]int(nil), index...), i)
			name := prefix + sf.Name
			if _, ok := leafValues[sf.Type]; ok {
				leaves = append(leaves, ruleLeaf{name, idx, sf.Type})
				continue
			}
			switch sf.Type.Kind() {
			case reflect.Struct:
				walk(sf.Type, name+".", idx)
			case reflect.String, reflect.Bool,
				reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				leaves = append(leaves, ruleLeaf{name, idx, sf.Type})
			default:
				t.Fatalf("Rule.%s has type %s, for which TestPlanHash has no values: add them to leafValues", name, sf.Type)
			}
		}
	}
	walk(reflect.TypeFor[Rule](), "", nil)
	return leaves
}
