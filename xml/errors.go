package netxml

import (
	"errors"
	"fmt"
)

// Kind classifies an error the way libvirt's error codes do. The kind decides the
// prefix of the message clients see (virsh prints it on its second error line), and
// callers branch on it (for example the API maps KindNoNetwork to "not found").
type Kind int

const (
	// KindInternal is libvirt's VIR_ERR_INTERNAL_ERROR: "internal error: ".
	KindInternal Kind = iota
	// KindXML is VIR_ERR_XML_ERROR: "XML error: ".
	KindXML
	// KindUnsupported is VIR_ERR_CONFIG_UNSUPPORTED: "unsupported configuration: ".
	KindUnsupported
	// KindOperationFailed is VIR_ERR_OPERATION_FAILED: "operation failed: ".
	KindOperationFailed
	// KindInvalidOperation is VIR_ERR_OPERATION_INVALID: "Requested operation is not valid: ".
	KindInvalidOperation
	// KindNoNetwork is VIR_ERR_NO_NETWORK: "Network not found: ".
	KindNoNetwork
	// KindInvalidArg is VIR_ERR_INVALID_ARG: "invalid argument: ".
	KindInvalidArg
	// KindPlain has no prefix (libvirt prints some parse errors bare, e.g.
	// "missing name information" or "invalid char in name: /").
	KindPlain
	// KindNotSupported is VIR_ERR_NO_SUPPORT: "this function is not supported by the connection driver: ".
	KindNotSupported
	// KindOperationUnsupported is VIR_ERR_OPERATION_UNSUPPORTED: "Operation not supported: "
	// (net-update of a section or command libvirt cannot apply).
	KindOperationUnsupported
	// KindNoNetworkPort is VIR_ERR_NO_NETWORK_PORT: "network port not found: ".
	KindNoNetworkPort
	// KindNetworkPortExists is VIR_ERR_NETWORK_PORT_EXIST, whose text wraps
	// the message: "network port MSG exists already".
	KindNetworkPortExists
)

var kindPrefix = map[Kind]string{
	KindInternal:             "internal error: ",
	KindXML:                  "XML error: ",
	KindUnsupported:          "unsupported configuration: ",
	KindOperationFailed:      "operation failed: ",
	KindInvalidOperation:     "Requested operation is not valid: ",
	KindNoNetwork:            "Network not found: ",
	KindInvalidArg:           "invalid argument: ",
	KindPlain:                "",
	KindNotSupported:         "this function is not supported by the connection driver: ",
	KindOperationUnsupported: "Operation not supported: ",
	KindNoNetworkPort:        "network port not found: ",
	KindNetworkPortExists:    "network port ",
}

// kindSuffix is what libvirt writes after the message for the few kinds
// whose text surrounds it.
var kindSuffix = map[Kind]string{KindNetworkPortExists: " exists already"}

// Prefix returns the text libvirt puts before a message of this kind.
func (k Kind) Prefix() string { return kindPrefix[k] }

// Error is an error with a libvirt-style kind. Error() includes the kind's prefix,
// so the text is exactly what virsh would print after "error: ".
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Kind.Prefix() + e.Msg + kindSuffix[e.Kind] }

// Errorf builds an *Error of kind k.
func Errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of the first *Error in err's chain, or KindInternal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// Message renders any error as libvirt would print it: an *Error keeps its own
// prefix; anything else is reported as an internal error.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return err.Error()
	}
	return KindInternal.Prefix() + err.Error()
}
