import FleetCore
import FleetSSH
import FleetTestSupport
import Foundation
import Testing

/// FleetSSH against the real test fleet: sshd per node in its own network namespace.
@Suite(.serialized, .usesSharedFleet, .enabled(if: TestFleet.isSupported))
struct SSHFleetTests {
  static let nodeCount = 5

  func fleet() async throws -> TestFleet {
    let fleet = try await TestFleet.shared(nodes: Self.nodeCount)
    try clearStaleShellLocks(fleet)
    return fleet
  }

  /// This machine's root `.bashrc` runs `pyenv init`, whose rehash lock, left behind by a shell killed during
  /// start-up (on a node cut off, or by another suite), makes every later remote command wait 60 s and print a
  /// warning to stderr. Nodes inherit that `.bashrc`; a lock older than 10 s is stale, so remove it.
  func clearStaleShellLocks(_ fleet: TestFleet) throws {
    for node in fleet.nodes {
      _ = try fleet.run(
        on: node,
        "find /root/.pyenv/shims -maxdepth 1 -name .pyenv-shim ! -newermt '10 seconds ago' -delete 2>/dev/null"
      )
    }
  }

  func options(
    _ fleet: TestFleet, identity: SSHIdentity? = nil, knownHosts: String? = nil,
    policy: HostKeyPolicy = .strict,
    connectTimeout: Duration = .seconds(60), operationTimeout: Duration = .seconds(120)
  ) -> SSHOptions {
    SSHOptions(
      identity: identity ?? .keyFile(path: fleet.clientKey, passphrase: nil),
      knownHostsFile: knownHosts ?? fleet.knownHosts, hostKeyPolicy: policy, connectTimeout: connectTimeout,
      operationTimeout: operationTimeout, keepaliveInterval: .seconds(2))
  }

  func endpoint(_ node: TestFleet.Node) -> SSHEndpoint {
    SSHEndpoint(host: node.address, port: 22, user: "root")
  }

  func withClient<T: Sendable>(_ body: (SSHClient) async throws -> T) async throws -> T {
    try await SSHClient.withClient(threads: 32, body)
  }

  func connectError(_ options: SSHOptions, _ endpoint: SSHEndpoint) async -> FleetError? {
    do {
      try await withClient { client in try await client.withConnection(endpoint, options: options) { _ in } }
      return nil
    } catch {
      return error as? FleetError
    }
  }

  @Test func execExitCodesStderrAndLargeStreams() async throws {
    let fleet = try await fleet()
    try await withClient { client in
      try await client.withConnection(endpoint(fleet.node(1)), options: options(fleet)) { c in
        let r = try await c.exec("echo out; echo err >&2; exit 42")
        #expect(r.stdoutString == "out\n")
        #expect(r.stderrString == "err\n")
        #expect(r.exitStatus == 42)
        #expect(try await c.exec("true").exitStatus == 0)
        #expect(try await c.exec("false").exitStatus == 1)
        let big = try await c.exec(
          "head -c 10485760 /dev/zero | tr '\\0' e >&2; head -c 10485760 /dev/zero | tr '\\0' o")
        #expect(big.stdout.count == 10_485_760 && big.stderr.count == 10_485_760)
        #expect(
          big.stdout.allSatisfy { $0 == UInt8(ascii: "o") }
            && big.stderr.allSatisfy { $0 == UInt8(ascii: "e") })
      }
    }
  }

  @Test func upload20MBVerifiedBySHA256OnTheNode() async throws {
    let fleet = try await fleet()
    let node = fleet.node(2)
    var generator = SystemRandomNumberGenerator()
    let content = (0..<(20 << 20) / 8).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } }
    let local = NSTemporaryDirectory() + "fleetsync-20mb-\(UUID().uuidString)"
    try Data(content).write(to: URL(fileURLWithPath: local))
    defer { try? FileManager.default.removeItem(atPath: local) }
    let expected = try String(decoding: shell("sha256sum \(local)").prefix(64), as: UTF8.self)
    try await withClient { client in
      try await client.withConnection(endpoint(node), options: options(fleet)) { c in
        try await c.uploadFile(localPath: local, to: "/srv/fleetsync-20mb", mode: 0o600)
      }
    }
    let check = try fleet.run(on: node, "sha256sum /srv/fleetsync-20mb; stat -c %a /srv/fleetsync-20mb")
    #expect(check.output == "\(expected)  /srv/fleetsync-20mb\n600\n")
    _ = try fleet.run(on: node, "rm -f /srv/fleetsync-20mb")
  }

  @Test(.disturbsSharedFleet) func uploadCutOffLeavesNoFileAtTarget() async throws {
    let fleet = try await fleet()
    let node = fleet.node(3)
    let content = [UInt8](repeating: 0x5A, count: 200 << 20)
    _ = try fleet.run(on: node, "rm -f /srv/cut-target /srv/.cut-target.fleetsync-tmp.*")
    var cutAt = ContinuousClock.now
    let error = try await withClient { client -> FleetError? in
      try await client.withConnection(endpoint(node), options: options(fleet, operationTimeout: .seconds(8)))
      { c in
        let upload = Task { try await c.upload(content, to: "/srv/cut-target", timeout: .seconds(8)) }
        // Cut the node off once the temp file is growing (or, should the upload end first, after the wait).
        _ = try await eventually(every: .milliseconds(50)) {
          let size = try fleet.run(on: node, "cat /srv/.cut-target.fleetsync-tmp.* 2>/dev/null | wc -c")
            .output
          return (Int(size.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 1 << 20
        }
        try fleet.cut(node)
        cutAt = ContinuousClock.now
        do {
          try await upload.value
          return nil
        } catch {
          return error as? FleetError
        }
      }
    }
    try fleet.restore(node)
    #expect(error?.code == .sshTimeout || error?.code == .sshConnectionLost)
    // Its 8 s deadline ends it; without one, a cut-off TCP connection would hang for many minutes.
    #expect(ContinuousClock.now - cutAt < Wait.deadline)
    #expect(try fleet.run(on: node, "test -e /srv/cut-target").status != 0)
    _ = try fleet.run(on: node, "rm -f /srv/.cut-target.fleetsync-tmp.*")
  }

  @Test func wrongKeyAndRSAKeyGetClearErrors() async throws {
    let fleet = try await fleet()
    let wrong = NSTemporaryDirectory() + "fleetsync-wrong-\(UUID().uuidString)"
    try shell("ssh-keygen -q -t ed25519 -N '' -f \(wrong)")
    defer { try? FileManager.default.removeItem(atPath: wrong) }
    let e1 = await connectError(
      options(fleet, identity: .keyFile(path: wrong, passphrase: nil)), endpoint(fleet.node(1)))
    #expect(e1?.code == .sshAuth)
    #expect(e1?.message.contains("root@\(fleet.node(1).address):22") == true)
    let e2 = await connectError(
      options(fleet, identity: .keyFile(path: fleet.rsaKey, passphrase: nil)), endpoint(fleet.node(1)))
    #expect(e2?.code == .sshAuthRSA)
    #expect(e2?.message.contains("libssh2 1.10") == true)
  }

  @Test func ecdsaKeyWithPassphraseAndAgent() async throws {
    let fleet = try await fleet()
    let ecdsa = options(fleet, identity: .keyFile(path: fleet.ecdsaKey, passphrase: fleet.ecdsaPassphrase))
    #expect(await connectError(ecdsa, endpoint(fleet.node(1))) == nil)
    let agent = try TestSSHAgent(adding: fleet.clientKey)
    defer { agent.stop() }
    let output = try await withClient { client in
      try await client.withConnection(endpoint(fleet.node(2)), options: options(fleet, identity: .agent)) {
        try await $0.exec("echo via-agent").stdoutString
      }
    }
    #expect(output == "via-agent\n")
  }

  @Test func unknownHostKeyStrictRefusesAcceptNewRecords() async throws {
    let fleet = try await fleet()
    let node = fleet.node(4)
    let file = NSTemporaryDirectory() + "fleetsync-kh-\(UUID().uuidString)"
    _ = FileManager.default.createFile(atPath: file, contents: Data())
    defer { try? FileManager.default.removeItem(atPath: file) }
    let fingerprint = try fleet.run(on: node, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").output
      .split(separator: " ")[1]
    let strict = await connectError(options(fleet, knownHosts: file), endpoint(node))
    #expect(strict?.code == .sshHostKeyUnknown)
    #expect(strict?.message.contains(String(fingerprint)) == true)
    #expect(await connectError(options(fleet, knownHosts: file, policy: .acceptNew), endpoint(node)) == nil)
    #expect(try String(contentsOfFile: file, encoding: .utf8).hasPrefix("\(node.address) ssh-ed25519 "))
    #expect(await connectError(options(fleet, knownHosts: file), endpoint(node)) == nil)
    #expect(try fleet.openSSH(node, "true", knownHosts: file).status == 0)
  }

  @Test(.disturbsSharedFleet) func changedHostKeyRefusedUnderEveryPolicy() async throws {
    let fleet = try await fleet()
    let node = fleet.node(5)
    let stale = try fleet.resetHostKey(node)
    defer { try? FileManager.default.removeItem(atPath: stale) }
    for policy in HostKeyPolicy.allCases {
      let error = await connectError(options(fleet, knownHosts: stale, policy: policy), endpoint(node))
      #expect(error?.code == .sshHostKeyChanged)
      #expect(error?.message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") == true)
      #expect(error?.message.contains(stale) == true)
    }
    #expect(await connectError(options(fleet), endpoint(node)) == nil)
  }

  @Test func unreachableHostFailsWithinItsDeadline() async throws {
    let fleet = try await fleet()
    let start = ContinuousClock.now
    let error = await connectError(
      options(fleet, connectTimeout: .seconds(2)),
      SSHEndpoint(host: fleet.unusedAddress, port: 22, user: "root"))
    #expect(error?.code == .sshUnreachable)
    // A bound for a hang, not a speed test: the deadline is 2 s, a loaded machine may take longer.
    #expect(ContinuousClock.now - start < .seconds(60))
  }

  @Test(.disturbsSharedFleet) func nodeCutMidCommandFailsWhileOthersSucceed() async throws {
    let fleet = try await fleet()
    let victim = fleet.node(3)
    let endpoints = fleet.nodes.map(endpoint)
    // The victim runs a sleep that outlasts the test and is cut off once it runs; the others run a
    // short command meanwhile.
    let tag = Int.random(in: 100_000...999_999)
    let (results, cutAt) = try await withClient { client in
      async let cutter: ContinuousClock.Instant = {
        try await waitFor("the command to run on \(victim)") {
          try fleet.run(on: victim, "pgrep -f '^sleep \(tag)'").status == 0
        }
        try fleet.cut(victim)
        return ContinuousClock.now
      }()
      let results = await client.fanOut(endpoints, options: options(fleet)) { c in
        if c.endpoint.host == victim.address {
          return try await c.exec("sleep \(tag); echo done", timeout: .seconds(15))
        }
        return try await c.exec("sleep 3; echo done")
      }
      return (results, try await cutter)
    }
    try fleet.restore(victim)
    // The victim's 15 s deadline ends its command; without one, the cut connection would hang.
    #expect(ContinuousClock.now - cutAt < Wait.deadline)
    for (endpoint, result) in results {
      if endpoint.host == victim.address {
        let code = (try? result.get()).map { _ in "ok" } ?? (result.failure?.code.name ?? "")
        #expect(code == "ssh.timeout" || code == "ssh.connectionLost")
      } else {
        #expect((try? result.get())?.stdoutString == "done\n")
      }
    }
  }

  /// A host cut off mid-command, its deadline far away: the kernel ends the connection once three
  /// keepalive intervals pass unacknowledged (`ssh.connectionLost`); the deadline never comes.
  @Test(.disturbsSharedFleet) func aCutHostIsLostAfterUnansweredKeepalives() async throws {
    let fleet = try await fleet()
    let victim = fleet.node(3)
    let tag = Int.random(in: 100_000...999_999)
    let error = try await withClient { client in
      try await client.withConnection(
        endpoint(victim), options: options(fleet, operationTimeout: .seconds(900))
      ) {
        c -> FleetError? in
        async let cut: Void = {
          try await waitFor("the command to run on \(victim)") {
            try fleet.run(on: victim, "pgrep -f '^sleep \(tag)'").status == 0
          }
          try fleet.cut(victim)
        }()
        do {
          _ = try await c.exec("sleep \(tag); echo done")
          try await cut
          return nil
        } catch {
          try await cut
          return error as? FleetError
        }
      }
    }
    try fleet.restore(victim)
    #expect(error?.code == .sshConnectionLost, "\(String(describing: error))")
  }

  @Test func cancellationKillsTheRemoteProcess() async throws {
    let fleet = try await fleet()
    let node = fleet.node(1)
    let tag = Int.random(in: 100_000...999_999)
    try await withClient { client in
      try await client.withConnection(endpoint(node), options: options(fleet)) { c in
        let task = Task { try await c.exec("sleep \(tag)") }
        let running = try await eventually { try fleet.run(on: node, "pgrep -f '^sleep \(tag)'").status == 0 }
        #expect(running)
        task.cancel()
        let error = await #expect(throws: FleetError.self) { try await task.value }
        #expect(error?.code == .cancelled)
        // Killed (TERM, then KILL): the sleep could not end by itself within the test.
        var still = (status: Int32(0), output: "")
        let gone = try await eventually {
          still = try fleet.run(on: node, "pgrep -af '^sleep \(tag)'")
          return still.status != 0
        }
        #expect(gone, "still running: \(still.output)")
      }
    }
  }

  @Test func shellQuotingPropertyOverSSH() async throws {
    let fleet = try await fleet()
    let alphabet: [String] = [
      "a", " ", "'", "\"", "\\", "$", "$(echo x)", "`echo y`", "\n", "\t", "-", "--", "*", ";", "&", "|", ">",
      "!", "ü", "日", "🙂", "${PATH}", "#",
    ]
    let samples =
      ["-n", "--", "-e x"]
      + (0..<100).map { _ in
        (0..<Int.random(in: 1...10)).map { _ in alphabet.randomElement()! }.joined()
      }
    try await withClient { client in
      try await client.withConnection(endpoint(fleet.node(2)), options: options(fleet)) { c in
        for sample in samples {
          let r = try await c.exec("printf '%s' \(try ShellQuote.quote(sample))")
          #expect(r.stdout == Array(sample.utf8), "\(sample.debugDescription)")
        }
      }
    }
  }

  @Test func fanOutDrivesHundredConnectionsAtOnce() async throws {
    let fleet = try await TestFleet.shared(nodes: 50)
    try clearStaleShellLocks(fleet)
    let endpoints = (fleet.nodes + fleet.nodes).map(endpoint)
    #expect(endpoints.count == 100)
    let client = SSHClient(threads: 100)
    let results = await client.fanOut(endpoints, options: options(fleet), window: 100) { c in
      try await c.exec("hostname").stdoutString
    }
    await client.shutdown()
    let failures = results.compactMap { $0.result.failure.map { "\($0)" } }
    #expect(failures.isEmpty, "\(failures)")
    #expect(Set(results.compactMap { try? $0.result.get() }).count == 50)
  }

  @Test func execAndPushCommandsReportPerHostAndExitCodes() async throws {
    let fleet = try await fleet()
    // A connect timeout for a loaded machine; the unused address fails within seconds (no ARP answer).
    let common = [
      "--identity", fleet.clientKey, "--known-hosts", fleet.knownHosts, "--connect-timeout", "30",
      "--host", "root@\(fleet.node(1).address)", "--host", "root@\(fleet.node(2).address)",
    ]
    let ok = try CLI.run("fleetsync", ["exec"] + common + ["--", "echo", "hi"])
    #expect(ok.status == 0)
    #expect(ok.stdout.contains("==> root@\(fleet.node(1).address):22 (exit 0)\nhi\n"))
    #expect(ok.stdout.contains("recap: 2 ok, 0 failed, 0 unreachable"))
    let failed = try CLI.run("fleetsync", ["exec"] + common + ["--", "exit 5"])
    #expect(failed.status == 2)
    #expect(failed.stdout.contains("recap: 0 ok, 2 failed, 0 unreachable"))
    let unreachable = try CLI.run(
      "fleetsync", ["exec"] + common + ["--host", "root@\(fleet.unusedAddress)", "--", "true"])
    #expect(unreachable.status == 3)
    #expect(unreachable.stdout.contains("recap: 2 ok, 0 failed, 1 unreachable"))
    #expect(unreachable.stderr.contains("root@\(fleet.unusedAddress):22"))
    // A deadline after login is a failed host, not an unreachable one.
    let late = try CLI.run("fleetsync", ["exec"] + common + ["--timeout", "3", "--", "sleep 30"])
    #expect(late.status == 2, "\(late.stdout)\(late.stderr)")
    #expect(late.stdout.contains("recap: 0 ok, 2 failed, 0 unreachable, 0 auth"), "\(late.stdout)")
    // A refused login is auth, and exits like a failed host.
    let wrong = NSTemporaryDirectory() + "fleetsync-wrong-\(UUID().uuidString)"
    try shell("ssh-keygen -q -t ed25519 -N '' -f \(wrong)")
    defer { _ = try? shell("rm -f \(wrong) \(wrong).pub") }
    let refused = try CLI.run(
      "fleetsync", ["exec", "--identity", wrong] + common.dropFirst(2) + ["--", "true"])
    #expect(refused.status == 2, "\(refused.stdout)\(refused.stderr)")
    #expect(refused.stdout.contains("recap: 0 ok, 0 failed, 0 unreachable, 2 auth"), "\(refused.stdout)")
    let local = NSTemporaryDirectory() + "fleetsync-push-\(UUID().uuidString)"
    try Data("pushed\n".utf8).write(to: URL(fileURLWithPath: local))
    defer { try? FileManager.default.removeItem(atPath: local) }
    let push = try CLI.run("fleetsync", ["push"] + common + [local, "/srv/pushed", "--mode", "0640"])
    #expect(push.status == 0)
    // An upload the logged-in host refuses is a failed host.
    let refusedUpload = try CLI.run("fleetsync", ["push"] + common + [local, "/nonexistent-dir/pushed"])
    #expect(refusedUpload.status == 2, "\(refusedUpload.stdout)\(refusedUpload.stderr)")
    #expect(refusedUpload.stdout.contains("recap: 0 ok, 2 failed, 0 unreachable, 0 auth"))
    for index in [1, 2] {
      let check = try fleet.run(
        on: fleet.node(index), "cat /srv/pushed; stat -c %a /srv/pushed; rm -f /srv/pushed")
      #expect(check.output == "pushed\n640\n")
    }
  }

  @discardableResult
  func shell(_ command: String) throws -> [UInt8] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw FleetError(.io, "command failed: \(command)") }
    return [UInt8](data)
  }
}

extension Result {
  fileprivate var failure: Failure? {
    if case .failure(let f) = self { return f }
    return nil
  }
}
