// The same hello as a Cloudflare Worker, served by workerd (the open-source Workers runtime).
export default {
  async fetch() {
    return new Response(JSON.stringify({ hello: 'world' }), {
      headers: { 'content-type': 'application/json' },
    });
  },
};
