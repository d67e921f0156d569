/** @module Required once while a stem cell boots so the first require of user code finds the CommonJS loader warm. */
exports.warm = true;
