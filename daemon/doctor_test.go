package daemon

import (
	"context"
	"errors"
	"testing"

	netxml "vnet/xml"
)

// A daemon whose host is not the machine's (here a fake; the test driver
// and session daemons alike) refuses net-doctor instead of answering an
// empty report, which would read as "no problems found".
func TestDoctorRefusedWithoutHost(t *testing.T) {
	m, _, _, _ := newTestManager(t)
	rep, err := m.Doctor(context.Background(), "")
	var xe *netxml.Error
	if !errors.As(err, &xe) || xe.Kind != netxml.KindOperationUnsupported || len(rep.Checks) != 0 {
		t.Fatalf("Doctor on a host it cannot read: %+v, %v", rep, err)
	}
}
