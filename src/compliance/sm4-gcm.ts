/**
 * @module SM4-GCM and the hearth-sm4 wire format (issue 13), for the platform and the CLI. The one
 * implementation is `runtime/node/guest/sm4-gcm.mts`: the Node guest, which opens and seals bodies inside
 * the sandbox, can import only its own folder.
 */

export {
  openBody,
  PLAIN_TYPE_HEADER,
  parseSm4Key,
  SM4_CONTENT_TYPE,
  sealBody,
  sm4GcmDecrypt,
  sm4GcmEncrypt,
  WIRE_VERSION,
} from '../runtime/node/guest/sm4-gcm.mjs';
