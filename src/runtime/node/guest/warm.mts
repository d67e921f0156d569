/** @module Imported once while a stem cell boots so the first import of user code finds the ESM loader warm. */
export const warm = true;
