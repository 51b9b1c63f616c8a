import FleetSSH

/// Runs `body` with a fresh ``SSHClient`` of `threads` threads and shuts the client down afterwards,
/// also when `body` throws.
public func withSSHClient<T: Sendable>(
  threads: Int, _ body: (SSHClient) async throws -> T
) async throws -> T {
  let client = SSHClient(threads: threads)
  do {
    let result = try await body(client)
    await client.shutdown()
    return result
  } catch {
    await client.shutdown()
    throw error
  }
}
