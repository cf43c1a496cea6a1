package netxml

// Parse parses libvirt network XML. (Preliminary version: unmarshal only; the
// full parser with normalisation and libvirt's parse-time checks replaces it.)
func Parse(data []byte) (*Network, error) {
	n := &Network{}
	if err := n.Network.Unmarshal(string(data)); err != nil {
		return nil, Errorf(KindXML, "%v", err)
	}
	if n.Forward != nil && n.Forward.Mode == "" {
		n.Forward.Mode = "nat"
	}
	return n, nil
}
