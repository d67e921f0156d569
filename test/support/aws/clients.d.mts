/** The pinned PyPI packages installed for the Invoke API tests. */
export const AWS_PACKAGES: readonly string[];
/** The venv's bin folder (`python`, `aws`), installed into the test cache when missing. */
export function awsClients(): string;
