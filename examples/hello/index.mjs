// The smallest Hearth function: `curl localhost:8080/function/hello` answers {"hello":"world"}.
export default async function handler() {
  return { hello: 'world' };
}
