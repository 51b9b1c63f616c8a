import FleetCore
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// A fleet of real SSH hosts on this machine, for integration tests (made by `scripts/testfleet`).
///
/// Each node is a network namespace on the private bridge `fsbrK` (host side `10.231.K.1`) with
/// its own address `10.231.K.(10+I)`, hostname `fsK-nI`, host keys and sshd, and its own
/// `/etc`, `/root`, `/var` and `/srv` (overlays). Nodes made with `up(id:nodes:systemd:)` may
/// boot systemd (``Node/systemd``). Every node accepts ``clientKey``,
/// ``ecdsaKey`` and ``rsaKey`` for `root`; ``knownHosts`` holds every node's ed25519 and ECDSA
/// host keys. Needs root: gate tests with `.enabled(if: TestFleet.isSupported)`.
///
/// Tests share one fleet per process through ``shared(nodes:)``; such a test carries
/// `.usesSharedFleet`. A test that cuts a node of the shared fleet, stops its sshd, changes its host
/// key or reboots it carries `.disturbsSharedFleet` instead (``cut(_:)``, ``killSSHD(_:)``,
/// ``resetHostKey(_:)`` and ``reboot(_:)`` refuse otherwise), runs alone among them, and restores the
/// node before it ends.
public struct TestFleet: Sendable {
  /// One host of the fleet.
  public struct Node: Sendable, Hashable, CustomStringConvertible {
    /// The node's hostname, e.g. `fs0-n1`.
    public let name: String
    /// The node's IPv4 address, e.g. `10.231.0.11`.
    public let address: String
    /// The node's 1-based index in the fleet.
    public let index: Int
    /// Whether the node boots systemd as its init (PID 1 of its own PID namespace, in a private
    /// root with its own cgroup): `/run/systemd/system` exists there and `systemctl` works.
    ///
    /// Other nodes have no init; services there run as plain processes.
    public let systemd: Bool

    /// Makes a node value; the fleet makes these from its `fleet.json`.
    public init(name: String, address: String, index: Int, systemd: Bool = false) {
      self.name = name
      self.address = address
      self.index = index
      self.systemd = systemd
    }

    /// The name and address, e.g. `fs0-n1 (10.231.0.11)`.
    public var description: String { "\(name) (\(address))" }
  }

  /// The fleet id K (0...9); fleets with different ids coexist.
  public let id: Int
  /// The nodes, in index order (`nodes[0]` is node 1).
  public let nodes: [Node]
  /// The fleet's state directory, `/tmp/fleetsync-testfleet-K`.
  public let stateDir: String
  /// The host's own address on the fleet bridge, `10.231.K.1` (what nodes see as the client).
  public let hostAddress: String
  /// Path of an ed25519 client key without passphrase, authorized for root on every node.
  public let clientKey: String
  /// Path of an ECDSA client key protected by ``ecdsaPassphrase``, authorized for root on every node.
  public let ecdsaKey: String
  /// The passphrase of ``ecdsaKey``.
  public let ecdsaPassphrase: Secret
  /// Path of a script that prints ``ecdsaPassphrase``: set `SSH_ASKPASS` to it and
  /// `SSH_ASKPASS_REQUIRE=force` to let OpenSSH tools use ``ecdsaKey`` without a terminal.
  public let askpass: String
  /// Path of an RSA client key, authorized on every node; libssh2 1.10 cannot use it against
  /// OpenSSH 9.2 (no rsa-sha2 signatures), OpenSSH's own client can.
  public let rsaKey: String
  /// Path of a known_hosts file with every node's ed25519 and ECDSA host key, by address.
  public let knownHosts: String

  /// An address on the fleet's subnet that no node has (`10.231.K.250`): connections to it
  /// time out or fail as unreachable, for deadline tests.
  public var unusedAddress: String { "10.231.\(id).250" }

  // MARK: - Finding and running the script

  /// The fleet id ``shared(nodes:)`` tries first: `FLEETSYNC_TESTFLEET_ID` from the
  /// environment, else 0.
  public static let sharedID: Int = explicitSharedID ?? 0

  /// `FLEETSYNC_TESTFLEET_ID`, if set to 0...9.
  static let explicitSharedID: Int? = {
    guard let text = ProcessInfo.processInfo.environment["FLEETSYNC_TESTFLEET_ID"],
      let id = Int(text), (0...9).contains(id)
    else { return nil }
    return id
  }()

  /// Ids ``shared(nodes:)`` falls back to, in order, when ``sharedID`` is in use by another live
  /// test process (and `FLEETSYNC_TESTFLEET_ID` is not set); only ids with nothing on them are taken.
  ///
  /// The other ids belong to suites with fleets of their own: 1 `NonSystemdRestartTests`,
  /// 2 `ProvisionReadOnlySysctlTests`, 3 `ProvisionFleetTests`, 8 `ProvisionLockTests`, and
  /// shared + 4 and shared + 9 in `TestFleetTests`.
  public static let fallbackIDs = [5, 6, 7]

  /// Path of `scripts/testfleet`, found by walking up from this file to the package root.
  public static let scriptPath: String? = {
    var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while dir.path != "/" {
      if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
        let script = dir.appendingPathComponent("scripts/testfleet").path
        return FileManager.default.isExecutableFile(atPath: script) ? script : nil
      }
      dir = dir.deletingLastPathComponent()
    }
    return nil
  }()

  /// Whether this machine can run a test fleet: root, and `ip`, `sshd`, `unshare`, `nsenter`,
  /// `ssh-keygen` and the script are present.
  public static var isSupported: Bool {
    guard geteuid() == 0, scriptPath != nil else { return false }
    return ["ip", "sshd", "unshare", "nsenter", "ssh-keygen", "flock"].allSatisfy { findTool($0) != nil }
  }

  /// Whether this machine can also boot systemd nodes: ``isSupported``, systemd installed at
  /// `/lib/systemd/systemd`, and a cgroup2 hierarchy mounted (each such node gets a cgroup of it).
  public static var systemdSupported: Bool {
    guard isSupported, FileManager.default.isExecutableFile(atPath: "/lib/systemd/systemd"),
      let mounts = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
    else { return false }
    return mounts.split(separator: "\n").contains { $0.contains(" - cgroup2 ") }
  }

  /// The full path of an executable named `name` on `PATH` or in the sbin directories.
  static func findTool(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let dirs = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
    return dirs.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
  }

  /// The result of one script run.
  public struct ScriptResult: Sendable {
    /// The exit status (or 128 + signal).
    public let status: Int32
    /// What the script wrote to stdout.
    public let output: String
    /// What the script wrote to stderr.
    public let errorOutput: String
  }

  /// Runs `scripts/testfleet --id K args...` and waits for it; does not check the status.
  ///
  /// Blocks the calling thread; from async code use ``runScriptDetached(id:_:)``.
  public static func runScript(id: Int, _ args: [String]) throws -> ScriptResult {
    guard let script = scriptPath else {
      throw FleetError(
        .testFleetUnsupported, "scripts/testfleet not found above \(#filePath); run tests from the package")
    }
    // stderr goes to a file, so the two streams cannot block each other.
    let errPath = NSTemporaryDirectory() + "testfleet-stderr-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    guard FileManager.default.createFile(atPath: errPath, contents: nil) else {
      throw FleetError(.io, "cannot create \(errPath)")
    }
    defer { try? FileManager.default.removeItem(atPath: errPath) }
    let errFile = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    defer { try? errFile.close() }

    let process = Process()
    process.executableURL = URL(fileURLWithPath: script)
    process.arguments = ["--id", String(id)] + args
    // Fleets this process brings up are owned by it: while it runs, no other `up` replaces them.
    var environment = ProcessInfo.processInfo.environment
    environment["FLEETSYNC_TESTFLEET_OWNER"] = String(getpid())
    process.environment = environment
    let out = Pipe()
    process.standardOutput = out
    process.standardError = errFile
    process.standardInput = FileHandle.nullDevice
    do {
      try process.run()
    } catch {
      throw FleetError.wrap(error, code: .testFleetScript, "cannot start \(script)")
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let status =
      process.terminationReason == .uncaughtSignal
      ? 128 + process.terminationStatus : process.terminationStatus
    let errData = (try? Data(contentsOf: URL(fileURLWithPath: errPath))) ?? Data()
    return ScriptResult(
      status: status,
      output: String(decoding: data, as: UTF8.self),
      errorOutput: String(decoding: errData, as: UTF8.self))
  }

  /// Runs the script on a dedicated thread, so a slow bring-up does not block the cooperative pool.
  public static func runScriptDetached(id: Int, _ args: [String]) async throws -> ScriptResult {
    try await onOwnThread { try runScript(id: id, args) }
  }

  /// Runs the script and throws a ``FleetError`` with its stderr unless it exits 0.
  @discardableResult
  static func runChecked(id: Int, _ args: [String]) throws -> ScriptResult {
    let result = try runScript(id: id, args)
    guard result.status == 0 else { throw commandError(id: id, args, result) }
    return result
  }

  static func commandError(id: Int, _ args: [String], _ result: ScriptResult) -> FleetError {
    let detail = result.errorOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    return FleetError(
      .testFleetScript,
      "testfleet --id \(id) \(args.joined(separator: " ")) exited \(result.status): \(detail)"
        + " (inspect with 'scripts/testfleet --id \(id) status')")
  }

  // MARK: - Fleet lifetime

  /// The fleet shared by all tests of this process (id ``sharedID``), with at least `nodes` nodes.
  ///
  /// The first call brings the fleet up (tearing down a stale one) and registers its teardown at
  /// process exit; later calls reuse it, adding nodes without disturbing existing ones if more
  /// are asked for. The fleet belongs to this process: another test process started meanwhile
  /// does not tear it down but uses one of ``fallbackIDs`` (read ``id`` for the one in use).
  /// Set `FLEETSYNC_TESTFLEET_KEEP=1` to leave the fleet up after the tests.
  public static func shared(nodes: Int) async throws -> TestFleet {
    try await SharedFleet.instance.fleet(nodes: nodes)
  }

  /// Brings up fleet `id` with `nodes` nodes (tearing down a stale one first) and returns it.
  ///
  /// The first `systemd` nodes boot systemd as their init (see ``Node/systemd``); the others are
  /// plain. The caller owns the fleet: call ``down()`` when done. Blocks the calling thread for a
  /// few seconds.
  public static func up(id: Int, nodes: Int, systemd: Int = 0) throws -> TestFleet {
    var args = ["up", String(nodes)]
    if systemd > 0 { args += ["--systemd", String(systemd)] }
    try runChecked(id: id, args)
    return try load(id: id)
  }

  /// Adds nodes to a running fleet until it has `nodes`; existing nodes are untouched.
  public static func grow(id: Int, nodes: Int) throws -> TestFleet {
    try runChecked(id: id, ["grow", String(nodes)])
    return try load(id: id)
  }

  /// Reads a running fleet's description from its `fleet.json`.
  public static func load(id: Int) throws -> TestFleet {
    let state = "/tmp/fleetsync-testfleet-\(id)"
    let json: Data
    do {
      json = try Data(contentsOf: URL(fileURLWithPath: "\(state)/fleet.json"))
    } catch {
      throw FleetError(
        .testFleetScript,
        "fleet \(id) is not up (no \(state)/fleet.json); run 'scripts/testfleet --id \(id) up N'",
        cause: SendableErrorBox(String(describing: error)))
    }
    let doc: FleetJSON
    do {
      doc = try JSONDecoder().decode(FleetJSON.self, from: json)
    } catch {
      throw FleetError.wrap(error, code: .testFleetScript, "cannot read \(state)/fleet.json")
    }
    let passphrase: String
    do {
      passphrase = try String(contentsOfFile: doc.passphraseFile, encoding: .utf8)
    } catch {
      throw FleetError.wrap(error, code: .io, "cannot read the ECDSA key's passphrase file in \(state)")
    }
    return TestFleet(
      id: doc.id,
      nodes: doc.nodes.map {
        Node(name: $0.name, address: $0.address, index: $0.index, systemd: $0.systemd ?? false)
      },
      stateDir: doc.state,
      hostAddress: doc.hostAddress,
      clientKey: doc.clientKey,
      ecdsaKey: doc.ecdsaKey,
      ecdsaPassphrase: Secret(passphrase.trimmingCharacters(in: .newlines)),
      askpass: doc.askpass,
      rsaKey: doc.rsaKey,
      knownHosts: doc.knownHosts)
  }

  /// Tears the fleet down: kills its processes, deletes namespaces, links, mounts and state.
  public func down() throws {
    try Self.runChecked(id: id, ["down"])
  }

  /// Checks that nothing of fleet `id` remains; returns the leftovers, one per line, if any.
  public static func leftovers(id: Int) throws -> [String] {
    let result = try runScript(id: id, ["check-clean"])
    if result.status == 0 { return [] }
    let lines = result.output.split(separator: "\n").map(String.init)
    guard !lines.isEmpty else { throw commandError(id: id, ["check-clean"], result) }
    return lines
  }

  // MARK: - Per-node operations

  /// The node with 1-based index `index`.
  public func node(_ index: Int) -> Node { nodes[index - 1] }

  /// Takes the node's link down: packets to and from it are dropped until ``restore(_:)``.
  public func cut(_ node: Node) throws {
    try checkMayDisturb("cut \(node.name)")
    try Self.runChecked(id: id, ["cut", node.name])
  }

  /// Brings a cut node's link back up.
  public func restore(_ node: Node) throws {
    try Self.runChecked(id: id, ["restore", node.name])
  }

  /// Stops the node's sshd (new connections are refused; established sessions survive).
  public func killSSHD(_ node: Node) throws {
    try checkMayDisturb("sshd-kill \(node.name)")
    try Self.runChecked(id: id, ["sshd-kill", node.name])
  }

  /// Starts the node's sshd again and waits until it answers.
  public func startSSHD(_ node: Node) throws {
    try Self.runChecked(id: id, ["sshd-start", node.name])
  }

  /// Reboots the node the hard way: every process of it is killed at once (SIGKILL, as a power cut
  /// would), then it boots again.
  ///
  /// What a disk holds stays (`/etc`, `/root`, `/var`, `/srv`, a systemd node's root, the host keys);
  /// `/run` and `/tmp` are new. A systemd node boots systemd, which starts what is enabled, then its
  /// sshd; a plain node has no init, so only its sshd comes back: run its boot scripts as its init
  /// would. Returns once sshd answers.
  public func reboot(_ node: Node) throws {
    try checkMayDisturb("reboot \(node.name)")
    try Self.runChecked(id: id, ["reboot", node.name])
  }

  /// Gives the node new host keys and restarts its sshd, for changed-host-key tests.
  ///
  /// ``knownHosts`` is rewritten with the new keys, so other tests keep working. The returned
  /// path is a copy of the old known_hosts (with the node's previous keys): connecting with it
  /// must fail as a changed host key. The caller may delete it.
  @discardableResult
  public func resetHostKey(_ node: Node) throws -> String {
    try checkMayDisturb("reset-hostkey \(node.name)")
    let stale = "\(stateDir)/known_hosts.before-reset-\(node.name)-\(UInt32.random(in: 0...UInt32.max))"
    do {
      try FileManager.default.copyItem(atPath: knownHosts, toPath: stale)
    } catch {
      throw FleetError.wrap(error, code: .io, "cannot copy \(knownHosts)")
    }
    try Self.runChecked(id: id, ["reset-hostkey", node.name])
    return stale
  }

  /// Throws unless this is not the shared fleet or the current test may disturb it
  /// (`.disturbsSharedFleet`): other tests use its nodes meanwhile.
  func checkMayDisturb(_ action: String) throws {
    guard id == SharedFleet.upID.load(ordering: .sequentiallyConsistent),
      !SharedResourceTrait.holdsExclusively(.sharedFleet)
    else { return }
    throw FleetError(
      .testFleetScript,
      "\(action) disturbs the shared fleet: only a test carrying .disturbsSharedFleet may do it")
  }

  /// Runs `command` with `sh -c` inside the node (via nsenter, not SSH) as an out-of-band check.
  ///
  /// Returns the command's exit status and stdout. A command that leaves a background process
  /// must redirect its output, or this call waits for that process.
  ///
  /// - Throws: ``FleetError`` (``FleetError/Code/testFleetScript``) if the command could not be
  ///   run in the node at all (node or fleet gone: the script's status 125).
  public func run(on node: Node, _ command: String) throws -> (status: Int32, output: String) {
    let args = ["exec", node.name, "--", "sh", "-c", command]
    let result = try Self.runScript(id: id, args)
    if result.status == 125 { throw Self.commandError(id: id, Array(args.prefix(2)), result) }
    return (result.status, result.output)
  }

  /// Runs `command` on the node through OpenSSH's `ssh` client as root, checking host keys
  /// against ``knownHosts``: a reference client to compare fleetsync's SSH code with.
  ///
  /// `key` defaults to ``clientKey``. Returns ssh's exit status (255 when the connection
  /// fails) and the remote command's stdout. The default `connectTimeout` (seconds) is for a loaded
  /// machine; a test that expects the connection to fail passes a short one.
  public func openSSH(
    _ node: Node, _ command: String, key: String? = nil, knownHosts: String? = nil, connectTimeout: Int = 30
  ) throws -> (status: Int32, output: String) {
    guard let ssh = Self.findTool("ssh") else {
      throw FleetError(
        .testFleetUnsupported, "OpenSSH client 'ssh' not found; apt-get install openssh-client")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: ssh)
    process.arguments = [
      "-i", key ?? clientKey, "-o", "IdentitiesOnly=yes",
      "-o", "UserKnownHostsFile=\(knownHosts ?? self.knownHosts)", "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=\(connectTimeout)",
      "-o", "LogLevel=ERROR", "root@\(node.address)", command,
    ]
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    process.standardInput = FileHandle.nullDevice
    do {
      try process.run()
    } catch {
      throw FleetError.wrap(error, code: .io, "cannot start \(ssh)")
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
  }
}

extension FleetError.Code {
  /// A `scripts/testfleet` command failed, or the fleet it describes is missing or unreadable.
  public static let testFleetScript = FleetError.Code("testfleet.script", meaning: .failed)
  /// This machine cannot run a test fleet (not root, tools missing, script not found).
  public static let testFleetUnsupported = FleetError.Code("testfleet.unsupported", meaning: .failed)
}

/// The layout of `$STATE/fleet.json` as `scripts/testfleet` writes it.
struct FleetJSON: Decodable {
  struct NodeJSON: Decodable {
    let index: Int
    let name: String
    let address: String
    let holderPid: Int
    let sshdPid: Int
    /// Absent in descriptions written before systemd nodes existed.
    let systemd: Bool?
  }

  let id: Int
  let bridge: String
  let state: String
  let hostAddress: String
  let clientKey: String
  let ecdsaKey: String
  let passphraseFile: String
  let askpass: String
  let rsaKey: String
  let knownHosts: String
  let nodes: [NodeJSON]
}
