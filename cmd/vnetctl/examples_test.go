// The fenced examples of /work/shared/docs/virsh-formats.md, copied verbatim (trailing spaces included).

package main

// Each constant is one transcript: "$ virsh ARGS" lines, then what virsh wrote.
const (
	exUUIDName = `$ virsh net-uuid default
400e018b-b381-4cf2-aa2e-65601ecf6eeb

$ virsh net-name 400e018b-b381-4cf2-aa2e-65601ecf6eeb
default

`

	exListOne = `$ virsh net-list --all
 Name      State    Autostart   Persistent
--------------------------------------------
 default   active   no          yes

`

	exListEmpty = `$ virsh net-list
 Name   State   Autostart   Persistent
----------------------------------------

`

	exListSeveral = `$ virsh net-list --all
 Name           State      Autostart   Persistent
---------------------------------------------------
 default        inactive   no          yes
 ref-fwddev     inactive   no          yes
 ref-isolated   inactive   no          yes
 ref-nat2       inactive   no          yes
 ref-nat3       inactive   no          yes
 ref-open       active     no          no
 ref-routed     inactive   no          yes

`

	exListName = `$ virsh net-list --all --name
default
ref-fwddev
ref-isolated
ref-nat2
ref-nat3
ref-open
ref-routed

`

	exListUUID = `$ virsh net-list --uuid --all
400e018b-b381-4cf2-aa2e-65601ecf6eeb
3eaea67c-bddc-49d0-96ad-d975b4935cfd
70639fbf-9056-4d48-87b0-b21f583a983a
e9e5f96c-7192-480b-a75a-2cfedc6ba82d
da16f9f1-bc1e-4fbe-b02a-7f8e4cefff32
1f50f7e6-fcf8-4c1a-a58f-48a1bdde3abc
1b5ae054-57bd-486c-8ff2-d0aa6c2317a9

`

	exListPersistent = `$ virsh net-list --all --persistent
 Name           State      Autostart   Persistent
---------------------------------------------------
 default        inactive   no          yes
 ref-fwddev     inactive   no          yes
 ref-isolated   inactive   no          yes
 ref-nat2       inactive   no          yes
 ref-nat3       inactive   no          yes
 ref-open       inactive   no          yes
 ref-routed     inactive   no          yes

`

	exListQuiet = `$ virsh -q net-list --all --persistent
 default        inactive   no   yes
 ref-fwddev     inactive   no   yes
 ref-isolated   inactive   no   yes
 ref-nat2       inactive   no   yes
 ref-nat3       inactive   no   yes
 ref-open       inactive   no   yes
 ref-routed     inactive   no   yes
`

	exInfoPersistent = `$ virsh net-info ref-open
Name:           ref-open
UUID:           1f50f7e6-fcf8-4c1a-a58f-48a1bdde3abc
Active:         yes
Persistent:     yes
Autostart:      no
Bridge:         virbr-open

`

	exInfoTransient = `$ virsh net-info ref-open
Name:           ref-open
UUID:           247db271-84f2-4190-b58e-ca769b6404ce
Active:         yes
Persistent:     no
Autostart:      no
Bridge:         virbr-open

`

	exDumpXML = `$ virsh net-dumpxml default
<network>
  <name>default</name>
  <uuid>400e018b-b381-4cf2-aa2e-65601ecf6eeb</uuid>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:94:14:49'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>

$ virsh net-dumpxml --inactive default
<network>
  <name>default</name>
  <uuid>400e018b-b381-4cf2-aa2e-65601ecf6eeb</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:94:14:49'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>

`

	exLifecycle = `$ virsh net-define open.xml
error: Failed to define network from open.xml
error: operation failed: network 'ref-open' already exists with uuid 1f50f7e6-fcf8-4c1a-a58f-48a1bdde3abc

$ virsh net-start ref-open
Network ref-open started

$ virsh net-start ref-open
error: Failed to start network ref-open
error: Requested operation is not valid: network is already active

$ virsh net-autostart ref-open
Network ref-open marked as autostarted

$ virsh net-autostart --disable ref-open
Network ref-open unmarked as autostarted

$ virsh net-destroy ref-open
Network ref-open destroyed

$ virsh net-destroy ref-open
error: Failed to destroy network ref-open
error: Requested operation is not valid: network 'ref-open' is not active

$ virsh net-undefine ref-open
Network ref-open has been undefined

$ virsh net-undefine ref-open
error: failed to get network 'ref-open'
error: Network not found: no network with matching name 'ref-open'

$ virsh net-info nosuchnet
error: failed to get network 'nosuchnet'
error: Network not found: no network with matching name 'nosuchnet'

`

	exTransient = `$ virsh net-create open.xml
Network ref-open created from open.xml

$ virsh net-destroy ref-open
Network ref-open destroyed

`

	exRedefine = `$ virsh net-define open.xml
Network ref-open defined from open.xml

$ virsh net-autostart ref-open
Network ref-open marked as autostarted

$ virsh net-define open2.xml
Network ref-open defined from open2.xml

$ virsh net-start ref-open
Network ref-open started

$ virsh net-define open3.xml
Network ref-open defined from open3.xml

`

	exRedefineXML = `$ virsh net-dumpxml ref-open
<network>
  <name>ref-open</name>
  <uuid>8e0f5dc0-9c49-4bcf-b311-5bc0c731c721</uuid>
  <forward mode='open'/>
  <bridge name='virbr-open' stp='on' delay='0'/>
  <mac address='52:54:00:2f:17:4e'/>
  <ip address='10.40.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.40.0.10' end='10.40.0.30'/>
    </dhcp>
  </ip>
</network>

$ virsh net-dumpxml --inactive ref-open
<network>
  <name>ref-open</name>
  <uuid>8e0f5dc0-9c49-4bcf-b311-5bc0c731c721</uuid>
  <forward mode='open'/>
  <bridge name='virbr-open' stp='on' delay='0'/>
  <mac address='52:54:00:2f:17:4e'/>
  <ip address='10.40.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.40.0.10' end='10.40.0.40'/>
    </dhcp>
  </ip>
</network>

`

	exUndefineActive = `$ virsh net-undefine ref-open
Network ref-open has been undefined

$ virsh net-list --all
 Name           State      Autostart   Persistent
---------------------------------------------------
 default        inactive   no          yes
 ref-fwddev     inactive   no          yes
 ref-isolated   inactive   no          yes
 ref-nat2       inactive   no          yes
 ref-nat3       inactive   no          yes
 ref-open       active     no          no
 ref-routed     inactive   no          yes

$ virsh net-destroy ref-open
Network ref-open destroyed

$ virsh net-list --all
 Name           State      Autostart   Persistent
---------------------------------------------------
 default        inactive   no          yes
 ref-fwddev     inactive   no          yes
 ref-isolated   inactive   no          yes
 ref-nat2       inactive   no          yes
 ref-nat3       inactive   no          yes
 ref-routed     inactive   no          yes

`

	exStartTimeErrors = `$ virsh net-define e06-range-reversed.xml
error: Failed to define network from e06-range-reversed.xml
error: internal error: range 10.206.0.200 - 10.206.0.100 is reversed 

$ virsh net-start ref-e15
error: Failed to start network ref-e15
error: internal error: Network is already in use by interface virbr0

`
)

// exDHCPLeases is virsh-formats.md §5.2.
const exDHCPLeases = `$ virsh net-dhcp-leases default
 Expiry Time           MAC address         Protocol   IP address           Hostname   Client ID or DUID
---------------------------------------------------------------------------------------------------------
 2026-11-22 13:22:16   52:54:00:12:34:01   ipv4       192.168.122.244/24   vm         -

$ virsh net-dhcp-leases default --mac 52:54:00:12:34:01
 Expiry Time           MAC address         Protocol   IP address           Hostname   Client ID or DUID
---------------------------------------------------------------------------------------------------------
 2026-11-22 13:22:16   52:54:00:12:34:01   ipv4       192.168.122.244/24   vm         -

`
