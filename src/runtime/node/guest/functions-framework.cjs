// Stands in for `@google-cloud/functions-framework` when the function does not install it (issue 18):
// `functions.http(name, fn)` and `functions.cloudEvent(name, fn)` register handlers that the guest
// finds by the handler's export name. The package's other exports are for its own server, not here.
'use strict';
const registry = new Map();
exports.http = (name, handler) => {
  registry.set(name, { userFunction: handler, signatureType: 'http' });
};
exports.cloudEvent = (name, handler) => {
  registry.set(name, { userFunction: handler, signatureType: 'cloudevent' });
};
exports.getRegisteredFunction = (name) => registry.get(name);
exports[Symbol.for('hearth.gcf.registry')] = registry;
