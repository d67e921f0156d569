export default async function handler() {
  return { hello: 'world' };
}
