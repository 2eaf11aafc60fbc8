// Preloaded into a gateway under test (node --import ./loopback.mjs):
// every server it opens listens on 127.0.0.1 only (the gateways listen on
// every interface, and the tests use loopback alone), on the port the
// gateway asks for or, with PORT_FILE set, on a free one whose number is
// written to PORT_FILE (via a rename, so a reader never sees half of it).
// The gateway exits when the process that started it is gone, so a test
// killed outright leaves no gateway behind.
import fs from 'node:fs';
import net from 'node:net';

const portFile = process.env.PORT_FILE;
const listen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
	// listen(port[, host][, backlog][, callback]) or listen({port, host})
	if (typeof args[0] === 'object' && args[0] !== null)
		args[0] = { ...args[0], host: '127.0.0.1', port: portFile ? 0 : args[0].port };
	else
		args = [portFile ? 0 : args[0], '127.0.0.1', ...args.slice(1).filter((a) => typeof a === 'function')];
	if (portFile)
		this.once('listening', () => {
			fs.writeFileSync(portFile + '.tmp', `${this.address().port}\n`);
			fs.renameSync(portFile + '.tmp', portFile);
		});
	return listen.apply(this, args);
};

const parent = process.ppid;
setInterval(() => {
	if (process.ppid !== parent)
		process.exit(0);
}, 500).unref();
