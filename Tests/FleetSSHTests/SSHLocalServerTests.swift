import FleetCore
import FleetTestSupport
import Foundation
import Testing

@testable import FleetSSH

/// The library against a real sshd on 127.0.0.1 (see ``LocalSSHD``).
@Suite(.serialized, .enabled(if: LocalSSHD.isSupported))
struct SSHLocalServerTests {
  let server = LocalSSHD.shared
  var endpoint: SSHEndpoint { SSHEndpoint(host: "127.0.0.1", port: server.port, user: "root") }

  func options(
    identity: SSHIdentity? = nil, knownHosts: String? = nil, policy: HostKeyPolicy = .strict
  ) -> SSHOptions {
    SSHOptions(
      identity: identity ?? .keyFile(path: server.clientKey, passphrase: nil),
      knownHostsFile: knownHosts ?? server.knownHosts, hostKeyPolicy: policy, connectTimeout: .seconds(60),
      operationTimeout: .seconds(120))
  }

  func withClient<T: Sendable>(_ body: (SSHClient) async throws -> T) async throws -> T {
    try await SSHClient.withClient(threads: 16, body)
  }

  func connectError(_ options: SSHOptions, endpoint: SSHEndpoint? = nil) async -> FleetError? {
    do {
      try await withClient { client in
        try await client.withConnection(endpoint ?? self.endpoint, options: options) { _ in }
      }
      return nil
    } catch {
      return error as? FleetError
    }
  }

  /// Whether a `sleep TAG` started by a test runs on this machine.
  static func running(_ tag: Int) throws -> Bool {
    try LocalSSHD.sh("pgrep -f '^sleep \(tag)' || true") != ""
  }

  func tempFile(_ name: String) -> String {
    NSTemporaryDirectory() + "fleetsync-\(name)-\(UUID().uuidString)"
  }

  @Test func execReportsStdoutStderrAndStatus() async throws {
    try await withClient { client in
      try await client.withConnection(endpoint, options: options()) { connection in
        let result = try await connection.exec("echo out; echo err >&2; exit 3")
        #expect(result.stdoutString == "out\n")
        #expect(result.stderrString == "err\n")
        #expect(result.exitStatus == 3)
        #expect(result.exitSignal == nil)
        let ok = try await connection.exec("printf 'no newline'")
        #expect(ok.stdoutString == "no newline")
        #expect(ok.succeeded)
        // A session killed by a signal reports 128+N, as a shell would, for each signal.
        for (name, status) in [("KILL", 137), ("TERM", 143), ("HUP", 129)] as [(String, Int32)] {
          let killed = try await connection.exec("kill -\(name) $$")
          #expect(killed.exitSignal == name)
          #expect(killed.exitStatus == status, "kill -\(name)")
          #expect(!killed.succeeded)
        }
      }
    }
  }

  @Test func execFeedsStdinAndDrainsLargeStreams() async throws {
    try await withClient { client in
      try await client.withConnection(endpoint, options: options()) { connection in
        let input = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7919) }
        let echoed = try await connection.exec("cat", stdin: input)
        #expect(echoed.stdout == input)
        // 10 MB to stderr first, then 10 MB to stdout: reading only stdout would deadlock.
        let big = try await connection.exec(
          "head -c 10485760 /dev/zero >&2; head -c 10485760 /dev/zero | tr '\\0' x")
        #expect(big.stderr.count == 10_485_760)
        #expect(big.stdout.count == 10_485_760)
        #expect(big.stdout.allSatisfy { $0 == UInt8(ascii: "x") })
        #expect(big.exitStatus == 0)
      }
    }
  }

  @Test func uploadIsAtomicAndReadable() async throws {
    let dir = tempFile("upload")
    try await withClient { client in
      try await client.withConnection(endpoint, options: options()) { connection in
        _ = try await connection.exec("mkdir -p \(dir)")
        let content = (0..<5_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        try await connection.upload(content, to: "\(dir)/file", mode: 0o640)
        #expect(try await connection.readFile("\(dir)/file") == content)
        // Overwriting an existing target works too (OpenSSH's SFTP rename refuses that; mv fallback).
        try await connection.upload(
          Array("second".utf8), to: "\(dir)/file", mode: 0o600, owner: "root", group: "root")
        #expect(try await connection.readFile("\(dir)/file") == Array("second".utf8))
        let stat = try await connection.exec("stat -c '%a %U' \(dir)/file; ls -A \(dir)")
        #expect(stat.stdoutString == "600 root\nfile\n")
        #expect(try await connection.readFile("\(dir)/missing") == nil)
        let local = tempFile("local")
        try Data(content.reversed()).write(to: URL(fileURLWithPath: local))
        defer { try? FileManager.default.removeItem(atPath: local) }
        try await connection.uploadFile(localPath: local, to: "\(dir)/fromfile", mode: 0o644)
        #expect(try await connection.readFile("\(dir)/fromfile") == content.reversed())
        _ = try await connection.exec("rm -rf \(dir)")
      }
    }
  }

  @Test func uploadIntoMissingDirectoryFailsWithoutLeakingContent() async throws {
    let error = await #expect(throws: FleetError.self) {
      try await withClient { client in
        try await client.withConnection(endpoint, options: options()) { connection in
          try await connection.upload(Array("TOPSECRET-CONTENT".utf8), to: "/nonexistent-dir-fs/x")
        }
      }
    }
    #expect(error?.code == .sshSFTP)
    #expect(error.map { !"\($0)".contains("TOPSECRET") } == true)
  }

  @Test func strictPolicyRefusesUnknownHostNamingFingerprint() async throws {
    let empty = tempFile("kh-empty")
    #expect(FileManager.default.createFile(atPath: empty, contents: nil))
    defer { try? FileManager.default.removeItem(atPath: empty) }
    let fingerprint = try LocalSSHD.sh("ssh-keygen -lf \(server.hostKey).pub").split(separator: " ")[1]
    let error = await connectError(options(knownHosts: empty))
    #expect(error?.code == .sshHostKeyUnknown)
    #expect(error?.message.contains(String(fingerprint)) == true)
    #expect(error?.message.contains("ssh-keyscan") == true)
    #expect(try String(contentsOfFile: empty, encoding: .utf8).isEmpty)
  }

  @Test func acceptNewRecordsOnceEvenWhenManyConnectAtOnce() async throws {
    let file = tempFile("kh-new")
    defer { try? FileManager.default.removeItem(atPath: file) }
    let endpoints = Array(repeating: endpoint, count: 20)
    let results = try await withClient { client in
      await client.fanOut(endpoints, options: options(knownHosts: file, policy: .acceptNew), window: 20) {
        try await $0.exec("true").exitStatus
      }
    }
    #expect(results.allSatisfy { (try? $0.result.get()) == 0 })
    let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 1)
    #expect(lines.first?.hasPrefix("[127.0.0.1]:\(server.port) ssh-ed25519 ") == true)
    #expect(await connectError(options(knownHosts: file, policy: .strict)) == nil)
    // OpenSSH agrees with the recorded line.
    try LocalSSHD.sh(
      "ssh -p \(server.port) -i \(server.clientKey) -o BatchMode=yes -o StrictHostKeyChecking=yes "
        + "-o UserKnownHostsFile=\(file) root@127.0.0.1 true")
  }

  @Test func changedKeyIsRefusedUnderEveryPolicy() async throws {
    let file = tempFile("kh-changed")
    defer { try? FileManager.default.removeItem(atPath: file) }
    let other = try String(contentsOfFile: server.wrongKey + ".pub", encoding: .utf8).split(separator: " ")
    try "# comment\n[127.0.0.1]:\(server.port) \(other[0]) \(other[1])\n".write(
      toFile: file, atomically: true, encoding: .utf8)
    for policy in HostKeyPolicy.allCases {
      let error = await connectError(options(knownHosts: file, policy: policy))
      #expect(error?.code == .sshHostKeyChanged)
      #expect(error?.message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") == true)
      #expect(error?.message.contains("\(file):2") == true)
    }
  }

  /// Issue 9: libssh2 compares keys of the offered type only, so a host recorded with an ECDSA key
  /// that now offers ed25519 looked new and was accepted under accept-new.
  @Test func aKeyOfAnotherTypeThanTheRecordedOneIsAChangedKey() async throws {
    let file = tempFile("kh-othertype")
    defer { try? FileManager.default.removeItem(atPath: file) }
    let other = try String(contentsOfFile: server.ecdsaKey + ".pub", encoding: .utf8).split(separator: " ")
    #expect(other[0].hasPrefix("ecdsa-"))
    let recorded = "[127.0.0.1]:\(server.port) \(other[0]) \(other[1])\n"
    try recorded.write(toFile: file, atomically: true, encoding: .utf8)
    for policy in HostKeyPolicy.allCases {
      let error = await connectError(options(knownHosts: file, policy: policy))
      #expect(error?.code == .sshHostKeyChanged, "\(policy)")
      #expect(error?.message.contains("\(file):1") == true)
    }
    #expect(try String(contentsOfFile: file, encoding: .utf8) == recorded, "nothing recorded")
  }

  @Test func aRevokedHostKeyIsRefusedUnderEveryPolicy() async throws {
    let file = tempFile("kh-revoked")
    defer { try? FileManager.default.removeItem(atPath: file) }
    let key = try String(contentsOfFile: server.hostKey + ".pub", encoding: .utf8).split(separator: " ")
    let known = try String(contentsOfFile: server.knownHosts, encoding: .utf8)
    try (known + "@revoked * \(key[0]) \(key[1])\n").write(toFile: file, atomically: true, encoding: .utf8)
    for policy in HostKeyPolicy.allCases {
      let error = await connectError(options(knownHosts: file, policy: policy))
      #expect(error?.code == .sshHostKeyRevoked, "\(policy)")
      #expect(error?.message.contains("revoked at \(file):2") == true)
    }
    #expect(await connectError(options(knownHosts: server.knownHosts)) == nil, "the same key, not revoked")
  }

  @Test func hashedKnownHostsLinesMatch() async throws {
    let file = tempFile("kh-hashed")
    defer { try? FileManager.default.removeItem(atPath: file) }
    try LocalSSHD.sh("cp \(server.knownHosts) \(file) && ssh-keygen -q -H -f \(file) && rm -f \(file).old")
    #expect(try !String(contentsOfFile: file, encoding: .utf8).contains("127.0.0.1"))
    #expect(await connectError(options(knownHosts: file)) == nil)
  }

  @Test func keyProblemsGetDistinctErrors() async throws {
    let wrong = await connectError(options(identity: .keyFile(path: server.wrongKey, passphrase: nil)))
    #expect(wrong?.code == .sshAuth)
    let rsa = await connectError(options(identity: .keyFile(path: server.rsaKey, passphrase: nil)))
    #expect(rsa?.code == .sshAuthRSA)
    #expect(rsa?.message.contains("ed25519 or ECDSA") == true)
    let missing = await connectError(options(identity: .keyFile(path: "/nonexistent/key", passphrase: nil)))
    #expect(missing?.code == .sshAuth)
    let badPhrase = await connectError(
      options(identity: .keyFile(path: server.ecdsaKey, passphrase: Secret("not it"))))
    #expect(badPhrase?.code == .sshAuth)
    #expect(badPhrase.map { !"\($0)".contains("not it") } == true)
    let good = await connectError(
      options(identity: .keyFile(path: server.ecdsaKey, passphrase: Secret(server.ecdsaPassphrase))))
    #expect(good == nil)
  }

  @Test func agentAuthentication() async throws {
    // A foreground agent this test owns and stops.
    let agent = try TestSSHAgent(adding: server.clientKey)
    defer { agent.stop() }
    let result = try await withClient { client in
      try await client.withConnection(endpoint, options: options(identity: .agent)) {
        try await $0.exec("echo agent").stdoutString
      }
    }
    #expect(result == "agent\n")
    unsetenv("SSH_AUTH_SOCK")
    #expect(await connectError(options(identity: .agent))?.code == .sshAuth)
  }

  @Test func cancellationKillsTheRemoteCommand() async throws {
    let tag = Int.random(in: 100_000...999_999)
    try await withClient { client in
      try await client.withConnection(endpoint, options: options()) { connection in
        let task = Task { try await connection.exec("sleep \(tag); echo never") }
        // Wait until the remote command runs, then cancel the task.
        let started = try await eventually { try Self.running(tag) }
        #expect(started)
        task.cancel()
        let error = await #expect(throws: FleetError.self) { try await task.value }
        #expect(error?.code == .cancelled)
        // Killed (TERM, then KILL): the sleep could not end by itself within the test.
        let killed = try await eventually { try !Self.running(tag) }
        #expect(killed)
        // The connection still works afterwards.
        #expect(try await connection.exec("echo alive").stdoutString == "alive\n")
      }
    }
  }

  @Test func deadlineStopsTheCommandAndKillsIt() async throws {
    let tag = Int.random(in: 100_000...999_999)
    try await withClient { client in
      try await client.withConnection(endpoint, options: options()) { connection in
        let start = ContinuousClock.now
        let error = await #expect(throws: FleetError.self) {
          try await connection.exec("sleep \(tag)", timeout: .seconds(3))
        }
        #expect(error?.code == .sshTimeout)
        // A bound for a hang (the sleep would last days), not a speed test of the 3 s deadline.
        #expect(ContinuousClock.now - start < Wait.deadline)
        let killed = try await eventually { try !Self.running(tag) }
        #expect(killed, "the timed-out command was not killed")
      }
    }
  }

  @Test func refusedPortIsAConnectError() async throws {
    var closed = endpoint
    closed.port = 1
    let error = await connectError(options(), endpoint: closed)
    #expect(error?.code == .sshConnect)
    #expect(error?.message.contains("root@127.0.0.1:1") == true)
  }

  @Test func shellQuotingRoundTripsThroughARealShell() async throws {
    let alphabet: [String] = [
      "a", "Z", "0", " ", "  ", "'", "\"", "\\", "$", "$(id)", "`id`", "\n", "\t", "-", "--", "*", "?", "[",
      "]", "{", "}", "~", "#", ";", "&", "|", "<", ">", "!", "%", "é", "日本", "🙂", "\r", "${HOME}", "''",
    ]
    var generator = SystemRandomNumberGenerator()
    let samples: [String] =
      ["", "-n", "-e", "--help", "'", "''''", "a'b\"c"]
      + (0..<150).map { _ in
        (0..<Int.random(in: 1...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)!
        }
        .joined()
      }
    try await withClient { client in
      try await client.withConnection(endpoint, options: options()) { connection in
        for sample in samples {
          let result = try await connection.exec("printf '%s' \(try ShellQuote.quote(sample))")
          #expect(result.stdout == Array(sample.utf8), "sample \(sample.debugDescription)")
        }
      }
    }
  }

  @Test func fanOutReportsEveryHostSeparately() async throws {
    var refused = endpoint
    refused.port = 1
    let endpoints = (0..<30).map { $0 % 10 == 3 ? refused : endpoint }
    let results = try await withClient { client in
      await client.fanOut(endpoints, options: options(), window: 8) { connection in
        try await connection.exec("echo $$").stdoutString
      }
    }
    #expect(results.map(\.endpoint) == endpoints)
    for (endpoint, result) in results {
      switch result {
      case .success(let text): #expect(endpoint.port == server.port && !text.isEmpty)
      case .failure(let error): #expect(endpoint.port == 1 && error.code == .sshConnect)
      }
    }
  }
}
