// Drives cockpit-machines' Networks page (Debian 12's 288) in headless
// Chromium against vnetd's org.libvirt on the bus cockpit's bridge uses, step
// by step as a person would, and prints one PASS/FAIL line per step.
// Besides what the page shows, it checks vnetd's own state: vnetctl net-info
// and net-dumpxml, and the files vnetd keeps (definition, autostart link,
// live status, dnsmasq's hostsfile) under vnetd's temp dirs.
// Usage: VNETCTL=path VNET_SOCKET=path node networks.cjs COCKPIT_URL OUT_DIR PROFILE_DIR VNETD_DIR
// (cockpit_test.go sets it up; VNETD_DIR holds vnetd's etc/, lib/ and run/).
// Screenshots are taken on failure only, into OUT_DIR.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { chromium } = require('playwright-core');

const [base, out, profile, vnetdDir] = process.argv.slice(2);
if (!base || !out || !profile || !vnetdDir) {
	console.error('usage: node networks.cjs COCKPIT_URL OUT_DIR PROFILE_DIR VNETD_DIR');
	process.exit(2);
}
const NAME = 'cockpit-test';
const NET = `network-${NAME}-system`; // cockpit's id prefix for the row
const MAC = '52:54:00:aa:bb:cc';
const IP = '192.168.150.10';
const STEP_TIMEOUT = 15000;

// vnetd's files for the test network (layout: daemon/store.go, dnsmasq/conf.go).
const files = {
	config: path.join(vnetdDir, 'etc/networks', NAME + '.xml'),
	autostart: path.join(vnetdDir, 'etc/networks/autostart', NAME + '.xml'),
	live: path.join(vnetdDir, 'run/networks', NAME + '.xml'),
	hostsfile: path.join(vnetdDir, 'lib/dnsmasq', NAME + '.hostsfile'),
};
const VNETCTL = process.env.VNETCTL;
if (!VNETCTL || !process.env.VNET_SOCKET) {
	console.error('networks.cjs: set VNETCTL and VNET_SOCKET');
	process.exit(2);
}
// ctl runs vnetctl against the test's vnetd (VNET_SOCKET) and returns its
// output and exit code.
function ctl(...args) {
	try {
		return { out: execFileSync(VNETCTL, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }), code: 0 };
	} catch (e) {
		return { out: `${e.stdout || ''}${e.stderr || ''}`, code: e.status };
	}
}
// expectInfo fails the step unless `vnetctl net-info name` shows want
// (e.g. { Active: 'yes', Autostart: 'no' }).
function expectInfo(name, want) {
	const r = ctl('net-info', name);
	if (r.code !== 0) throw new Error(`vnetctl net-info ${name}: exit ${r.code}: ${r.out.trim()}`);
	const info = {};
	for (const line of r.out.split('\n')) {
		const m = /^([A-Za-z ]+):\s+(.*)$/.exec(line);
		if (m) info[m[1]] = m[2].trim();
	}
	for (const [k, v] of Object.entries(want)) {
		if (info[k] !== v) throw new Error(`vnetctl net-info ${name}: ${k} is "${info[k]}", want "${v}"`);
	}
	return info;
}
// expectXML fails the step unless `vnetctl net-dumpxml [flags] name` contains
// (or, with want false, lacks) text.
function expectXML(name, flags, text, want) {
	const r = ctl('net-dumpxml', ...flags, name);
	if (r.code !== 0) throw new Error(`vnetctl net-dumpxml ${name}: exit ${r.code}: ${r.out.trim()}`);
	if (r.out.includes(text) !== want) throw new Error(`vnetctl net-dumpxml ${flags.join(' ')} ${name}: ${want ? 'lacks' : 'still has'} ${text}`);
}
const read = f => { try { return fs.readFileSync(f, 'utf8'); } catch { return ''; } };
const exists = f => { try { fs.lstatSync(f); return true; } catch { return false; } };
// expectFile fails the step unless f exists (or not) and contains text.
function expectFile(what, f, want, text) {
	if (exists(f) !== want) throw new Error(`${what}: ${f} ${want ? 'missing' : 'still there'}`);
	if (text && !read(f).includes(text)) throw new Error(`${what}: ${f} lacks ${text}`);
}

const results = [];
const consoleLines = [];

async function main() {
	const ctx = await chromium.launchPersistentContext(profile, {
		executablePath: '/usr/bin/chromium',
		headless: true,
		viewport: { width: 1100, height: 760 },
		args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
			'--disable-background-networking', '--disable-component-update', '--disable-sync'],
	});
	const page = ctx.pages()[0] || await ctx.newPage();
	page.setDefaultTimeout(STEP_TIMEOUT);
	page.on('console', m => consoleLines.push(`${m.type()}: ${m.text()}`));
	page.on('pageerror', e => consoleLines.push(`pageerror: ${e.message}`));

	// The machines page lives in an iframe of cockpit's shell.
	await page.goto(`${base}/machines#/networks`, { waitUntil: 'load' });
	const f = page.frameLocator('iframe[name$="machines"]');
	const frame = () => page.frames().find(x => x.url().includes('/machines/index.html'));
	const shot = name => page.screenshot({ path: path.join(out, name) });
	const row = n => f.locator(`tr[data-row-id="network-${n}-system"]`);
	const state = n => f.locator(`#network-${n}-system-state`);
	// Alerts cockpit shows for failed calls (inline in a dialog or the row, or toasts).
	const alerts = async () => {
		const fr = frame();
		if (!fr) return [];
		return fr.evaluate(() => [...document.querySelectorAll('.pf-c-alert')].map(a => a.innerText.replace(/\s+/g, ' ').trim()));
	};
	const expand = async n => {
		const toggle = row(n).locator('td.pf-c-table__toggle button');
		if ((await toggle.getAttribute('aria-expanded')) !== 'true') await toggle.click();
	};

	async function step(name, fn) {
		const before = new Set(await alerts());
		try {
			await fn();
			const extra = (await alerts()).filter(a => !before.has(a));
			if (extra.length) throw new Error('alert: ' + extra.join(' | '));
			results.push({ name, ok: true });
			console.log(`PASS ${name}`);
		} catch (e) {
			const extra = (await alerts().catch(() => [])).filter(a => !before.has(a));
			const msg = (e.message.split('\n')[0] + (extra.length && !e.message.startsWith('alert:') ? ' | alert: ' + extra.join(' | ') : ''));
			results.push({ name, ok: false, msg });
			console.log(`FAIL ${name}: ${msg}`);
			await shot(`fail-${name.replace(/\W+/g, '-')}.png`).catch(() => {});
			// Close a dialog left open by the failure, so later steps can run.
			const cancel = f.locator('[role=dialog] button', { hasText: /^(Cancel|Close)$/ });
			if (await cancel.count().catch(() => 0)) await cancel.first().click().catch(() => {});
		}
	}

	await step('list', async () => {
		await f.locator('#network-default-system-name').waitFor();
		const text = (await row('default').innerText()).replace(/\s+/g, ' ');
		if (!/virbr0/.test(text) || !/NAT/.test(text) || !/active/.test(text)) throw new Error(`default row shows "${text}"`);
		expectInfo('default', { Active: 'yes', Bridge: 'virbr0' });
	});

	await step('details', async () => {
		await expand('default');
		const addr = await f.locator('#network-default-system-ipv4-address').innerText();
		const range = await f.locator('#network-default-system-ipv4-dhcp-range').innerText();
		if (!addr.includes('192.168.122.1') || !range.includes('192.168.122.2')) throw new Error(`details show "${addr}" / "${range}"`);
	});

	await step('create', async () => {
		await f.locator('button', { hasText: 'Create virtual network' }).click();
		const dlg = f.locator('[role=dialog]');
		await dlg.locator('#create-network-name').fill(NAME);
		await dlg.locator('#create-network-forward-mode').selectOption('nat');
		await dlg.locator('#network-ipv4-address').fill('192.168.150.1');
		await dlg.locator('#network-ipv4-netmask').fill('24');
		await dlg.locator('#network-ipv4-dhcp').check();
		await dlg.locator('#network-ipv4-dhcp-range-start').fill('192.168.150.100');
		await dlg.locator('#network-ipv4-dhcp-range-end').fill('192.168.150.200');
		await dlg.getByRole('button', { name: 'Create', exact: true }).click();
		await dlg.waitFor({ state: 'detached' }).catch(async () => {
			throw new Error('dialog stayed open: ' + (await dlg.innerText()).replace(/\s+/g, ' '));
		});
		await state(NAME).waitFor();
		const s = (await state(NAME).innerText()).trim();
		if (s !== 'inactive') throw new Error(`new network is "${s}", want inactive`);
		const dev = (await f.locator(`#${NET}-device`).innerText()).trim();
		if (!/^virbr\d+$/.test(dev)) throw new Error(`device "${dev}"`);
		expectFile('definition', files.config, true, '<uuid>');
		expectFile('live status', files.live, false);
		expectInfo(NAME, { Active: 'no', Persistent: 'yes', Autostart: 'no', Bridge: dev });
		expectXML(NAME, [], "<ip address='192.168.150.1'", true);
	});

	await step('activate', async () => {
		await f.locator(`#activate-${NET}`).click();
		await f.locator(`#${NET}-state`, { hasText: /^active$/ }).waitFor();
		expectFile('live status', files.live, true);
		expectInfo(NAME, { Active: 'yes' });
	});

	await step('autostart on', async () => {
		await expand(NAME);
		const sw = f.locator(`#${NET}-autostart`);
		if (await sw.isChecked()) throw new Error('autostart already on for a new network');
		await f.locator(`label[for="${NET}-autostart"]`).click();
		await f.locator(`#${NET}-autostart:checked`).waitFor({ state: 'attached' });
		expectFile('autostart link', files.autostart, true);
		expectInfo(NAME, { Autostart: 'yes' });
	});

	await step('add static DHCP host', async () => {
		await expand(NAME);
		await f.locator(`#${NET}-static-host-entries-add`).click();
		const dlg = f.locator('[role=dialog]');
		await dlg.locator('#add-new-static-entry-mac-address').fill(MAC);
		await dlg.locator('#add-new-static-entry-ip-address').fill(IP);
		await dlg.locator('#add-new-static-entry-save').click();
		await dlg.waitFor({ state: 'detached' }).catch(async () => {
			throw new Error('dialog stayed open: ' + (await dlg.innerText()).replace(/\s+/g, ' '));
		});
		await f.locator('.overview-tab', { hasText: `MAC: ${MAC}, IP: ${IP}` }).waitFor();
		// CONFIG|LIVE: in the definition and in the running dnsmasq's hostsfile.
		expectFile('definition', files.config, true, MAC);
		expectFile('dnsmasq hostsfile', files.hostsfile, true, MAC);
		expectXML(NAME, [], `<host mac='${MAC}' ip='${IP}'`, true);
		expectXML(NAME, ['--inactive'], `<host mac='${MAC}' ip='${IP}'`, true);
	});

	await step('persisted after reload', async () => {
		// A fresh page reads everything again from vnetd: autostart and the host stay.
		await page.reload({ waitUntil: 'load' });
		await state(NAME).waitFor();
		await expand(NAME);
		await f.locator('.overview-tab', { hasText: `MAC: ${MAC}, IP: ${IP}` }).waitFor();
		if (!await f.locator(`#${NET}-autostart`).isChecked()) throw new Error('autostart is off after reload');
	});

	await step('remove static DHCP host', async () => {
		await expand(NAME);
		const entry = f.locator('.overview-tab dd', { hasText: `MAC: ${MAC}` });
		await entry.getByRole('button', { name: 'remove' }).click();
		const dlg = f.locator('[role=dialog]');
		await dlg.getByRole('button', { name: /^Remove/ }).click();
		await dlg.waitFor({ state: 'detached' }).catch(async () => {
			throw new Error('dialog stayed open: ' + (await dlg.innerText()).replace(/\s+/g, ' '));
		});
		await f.locator('.overview-tab', { hasText: `MAC: ${MAC}` }).waitFor({ state: 'detached' });
		if (read(files.config).includes(MAC)) throw new Error(`definition ${files.config} still has ${MAC}`);
		if (read(files.hostsfile).includes(MAC)) throw new Error(`dnsmasq hostsfile ${files.hostsfile} still has ${MAC}`);
		expectXML(NAME, [], MAC, false);
		expectXML(NAME, ['--inactive'], MAC, false);
	});

	await step('autostart off', async () => {
		await expand(NAME);
		await f.locator(`label[for="${NET}-autostart"]`).click();
		await f.locator(`#${NET}-autostart:not(:checked)`).waitFor({ state: 'attached' });
		expectFile('autostart link', files.autostart, false);
		expectInfo(NAME, { Autostart: 'no' });
	});

	await step('deactivate', async () => {
		await f.locator(`#deactivate-${NET}`).click();
		await f.locator(`#${NET}-state`, { hasText: /^inactive$/ }).waitFor();
		expectFile('live status', files.live, false);
		expectInfo(NAME, { Active: 'no', Persistent: 'yes' });
	});

	await step('delete (active network)', async () => {
		// Delete an active network: cockpit calls Destroy, then Undefine.
		await f.locator(`#activate-${NET}`).click();
		await f.locator(`#${NET}-state`, { hasText: /^active$/ }).waitFor();
		await f.locator(`#${NET}-action-kebab button`).first().click();
		await f.locator(`#${NET}-action-kebab`).getByText('Delete', { exact: true }).click();
		const dlg = f.locator('#delete-resource-modal');
		await dlg.locator('#delete-resource-modal-primary').click();
		await dlg.waitFor({ state: 'detached' }).catch(async () => {
			throw new Error('dialog stayed open: ' + (await dlg.innerText()).replace(/\s+/g, ' '));
		});
		await row(NAME).waitFor({ state: 'detached' });
		expectFile('definition', files.config, false);
		expectFile('live status', files.live, false);
		const r = ctl('net-info', NAME);
		if (r.code === 0 || !r.out.includes('Network not found')) throw new Error(`vnetctl net-info ${NAME} after delete: exit ${r.code}: ${r.out.trim()}`);
		expectInfo('default', { Active: 'yes' });
	});

	await ctx.close();
}

main().catch(e => {
	console.log(`FAIL setup: ${e.message.split('\n')[0]}`);
	results.push({ name: 'setup', ok: false, msg: e.message });
}).finally(() => {
	fs.writeFileSync(path.join(out, 'browser-console.log'), consoleLines.join('\n') + '\n');
	const failed = results.filter(r => !r.ok).length;
	console.log(`${results.length - failed} of ${results.length} steps passed`);
	process.exit(failed ? 1 : 0);
});
