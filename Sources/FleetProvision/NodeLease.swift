import FleetCore
import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A run's lease on one node: `up` and `down` hold it while they work on the node, so two
/// controllers (two machines, two checkouts of one inventory) never interleave their writes to it.
///
/// SSH keeps no file descriptor open across commands, so this is not a held `flock`: it is a lease
/// file, ``path``, in the node's tmpfs `/run` (a reboot ends every run and every lease with it). It
/// holds the owner's random token, who it is (pid, host, command, since) and an expiry in the
/// node's own clock. Every change to it happens in one short command under `flock` on the file
/// itself (re-checked to still be the file at that path), so two runs cannot both take it.
///
/// A crashed controller never leaves a node locked for long: the lease expires ``ttl`` seconds after
/// its last renewal, and then anyone may take it. The holder renews it before a command once a third
/// of the lease has passed (``LeasedHost``), and the longest single command (the health wait) is
/// shorter than two thirds, so a live run never loses it. A lease held by a run on this same machine
/// whose process is gone is taken over at once (the pid cannot belong to a live run of ours: a
/// reused pid only makes us wait for the expiry, never steal). A renewal that finds another owner
/// stops the run's work on the node: someone took over while this run stalled.
public final class NodeLease: Sendable {
  /// The lease file on every node.
  public static let path = "/run/fleetsync.lock"

  /// This run's token: the lease is ours while the file holds it.
  public let token: String
  /// Seconds the lease lasts after each renewal.
  public let ttl: Int
  /// The node's name, for messages.
  let name: String
  let host: any RemoteHost
  let holder: ControllerLock.Holder
  let lastRenewal: Mutex<ContinuousClock.Instant>
  /// The lease file (``NodeLease/path`` but in tests).
  let file: String

  private init(
    name: String, host: any RemoteHost, holder: ControllerLock.Holder, ttl: Int, token: String, path: String
  ) {
    self.file = path
    self.name = name
    self.host = host
    self.holder = holder
    self.ttl = ttl
    self.token = token
    self.lastRenewal = Mutex(.now)
  }

  /// The lease time for a run whose longest command is a health wait of `healthDeadline` seconds.
  public static func ttl(healthDeadline: Int) -> Int { 2 * max(0, healthDeadline) + 600 }

  /// Takes the lease on `host` (named `name`) for `holder`; `path` is the lease file (tests only).
  ///
  /// - Throws: ``FleetError/Code/nodeLocked`` naming the holder when another run holds it;
  ///   ``FleetError/Code/remoteStep`` when the lease command fails.
  public static func acquire(
    on host: any RemoteHost, name: String, holder: ControllerLock.Holder, ttl: Int, path: String = path
  ) async throws -> NodeLease {
    let lease = NodeLease(
      name: name, host: host, holder: holder, ttl: ttl, token: UUID().uuidString, path: path)
    var answer = try await lease.send(.acquire(takingOver: nil))
    if case .held(let other?, let token?, _) = answer, other.isGoneLocalRun(token: token) {
      answer = try await lease.send(.acquire(takingOver: token))
    }
    guard case .held(let other, let token, let seconds) = answer else {
      liveTokens.withLock { _ = $0.insert(lease.token) }
      return lease
    }
    if let other, let token, other.isLiveLocalRun(token: token) {
      throw FleetError(
        .sameMachine,
        "\(name) is a machine this run already works on under another name (its lease \(lease.file) is this "
          + "run's): one machine under two names")
    }
    throw lease.heldError(other, expiresIn: seconds)
  }

  /// Extends the lease when a third of it has passed since the last renewal.
  ///
  /// - Throws: ``FleetError/Code/nodeLockLost`` when the lease is no longer ours.
  public func renewIfDue() async throws {
    let started = ContinuousClock.now
    let due = lastRenewal.withLock { started - $0 >= .seconds(ttl / 3) }
    guard due else { return }
    if case .held(let other, _, _) = try await send(.renew) {
      throw FleetError(
        .nodeLockLost,
        "\(name): this run's lease on the node (\(file)) is no longer its own"
          + (other.map { ": \($0) holds it now" } ?? "")
          + "; this run stalled longer than the lease (\(ttl)s) and stopped working on the host. "
          + "Run `fleetsync up` again once the other run is done.")
    }
    lastRenewal.withLock { $0 = started }
  }

  /// Gives the lease up if it is still ours; a failure only lets it expire by itself.
  public func release() async {
    _ = try? await send(.release)
    _ = Self.liveTokens.withLock { $0.remove(token) }
  }

  /// Tokens of the leases runs of this process hold now.
  static let liveTokens = Mutex<Set<String>>([])

  // MARK: The lease command

  enum Action {
    case acquire(takingOver: String?)
    case renew
    case release
  }

  enum Answer {
    case ok
    /// Another run holds it (who, its token, seconds until it expires).
    case held(ControllerLock.Holder?, token: String?, expiresIn: Int?)
  }

  func send(_ action: Action) async throws -> Answer {
    let out = try await host.run(try script(action))
    let sections = SectionedOutput(out.stdout)
    guard out.status == 0, sections["end"] != nil else {
      let tail = out.stderr.split(separator: "\n").suffix(3).joined(separator: " | ")
      throw FleetError(
        .remoteStep, "\(name): locking the node (\(file)) failed (exit \(out.status)): \(tail)")
    }
    guard let held = sections["held"] else { return .ok }
    var fields: [String: String] = [:]
    for line in held {
      guard let eq = line.firstIndex(of: "=") else { continue }
      fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
    }
    let holder = fields["pid"].flatMap(Int32.init).map { pid in
      ControllerLock.Holder(
        pid: pid, host: fields["host"] ?? "?", command: fields["command"] ?? "?",
        since: fields["since"].flatMap { try? Date($0, strategy: .iso8601) } ?? .distantPast)
    }
    let expiresIn = fields["expires"].flatMap(Int.init).flatMap { until in
      fields["now"].flatMap(Int.init).map { until - $0 }
    }
    return .held(holder, token: fields["token"], expiresIn: expiresIn)
  }

  /// One shell command that does `action` under `flock` on the lease file; it prints `@@held` and
  /// the file's lines when another run holds the lease, and `@@end` when it ran to the end.
  func script(_ action: Action) throws -> String {
    let me = try ShellQuote.quote(token)
    var text = """
      L=\(try ShellQuote.quote(file)); me=\(me)
      command -v flock >/dev/null 2>&1 || { echo "flock(1) is not installed (package util-linux)" >&2; exit 3; }
      i=0
      while :; do
        exec 9>>"$L" || exit 3
        flock -w 30 9 || { echo "$L stayed locked for 30s" >&2; exit 3; }
        [ "$L" -ef /dev/fd/9 ] && break
        exec 9>&-; i=$((i+1)); [ $i -lt 50 ] || { echo "$L keeps being replaced" >&2; exit 3; }
      done
      now=$(date +%s); owner=$(sed -n 's/^token=//p' "$L"); until=$(sed -n 's/^expires=//p' "$L")
      case $until in ''|*[!0-9]*) until=0 ;; esac

      """
    switch action {
    case .acquire(let stale):
      let staleWord = try ShellQuote.quote(stale ?? "")
      text += """
        if [ -n "$owner" ] && [ "$owner" != "$me" ] && [ "$owner" != \(staleWord) ] && [ "$until" -gt "$now" ]; then
          echo @@held; cat "$L"; echo "now=$now"
        else
        \(try writeLines())
        fi

        """
    case .renew:
      text += """
        if [ "$owner" != "$me" ]; then echo @@held; cat "$L"; echo "now=$now"; else
        \(try writeLines())
        fi

        """
    case .release:
      text += "if [ \"$owner\" = \"$me\" ]; then rm -f -- \"$L\"; fi\n"
    }
    return text + "echo @@end\n"
  }

  /// The lease file's content, written in place (the file stays the one that is locked).
  private func writeLines() throws -> String {
    let lines = [
      "token=\(token)", "pid=\(holder.pid)", "host=\(Self.oneLine(holder.host))",
      "command=\(Self.oneLine(holder.command))", "since=\(holder.since.formatted(.iso8601))",
    ]
    return "  printf '%s\\n' " + (try lines.map(ShellQuote.quote).joined(separator: " "))
      + " \"expires=$((now + \(ttl)))\" >\"$L\""
  }

  static func oneLine(_ text: String) -> String {
    String(text.map { $0.isNewline ? " " : $0 }.prefix(300))
  }

  func heldError(_ other: ControllerLock.Holder?, expiresIn: Int?) -> FleetError {
    let who = other.map { "\($0)" } ?? "a run that did not say who it is"
    let expiry = expiresIn.map { " Its lease ends in \($0)s unless that run renews it." } ?? ""
    return FleetError(
      .nodeLocked,
      "\(name) is being changed by another fleetsync run: \(who).\(expiry) Let that run finish, then run "
        + "this command again. If that run is gone (its machine crashed or lost the network), its lease "
        + "ends by itself; to see who holds it: `cat \(file)` on \(name).")
  }

  /// This machine's host name.
  static let localHostName: String = {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "?" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }()
}

extension ControllerLock.Holder {
  /// Whether this holder of the lease `token` is a run of this very process that still holds it:
  /// the node was already leased under another inventory name.
  func isLiveLocalRun(token: String) -> Bool {
    host == NodeLease.localHostName && pid == getpid() && NodeLease.liveTokens.withLock { $0.contains(token) }
  }

  /// Whether this holder of the lease `token` is a run of this machine that has ended: its process
  /// no longer exists, or it is this process and no run of it holds the lease any more (it ended
  /// without reaching the node to give it up). Its lease can be taken over at once.
  func isGoneLocalRun(token: String) -> Bool {
    guard host == NodeLease.localHostName else { return false }
    if pid == getpid() { return !NodeLease.liveTokens.withLock { $0.contains(token) } }
    return kill(pid, 0) != 0 && errno == ESRCH
  }
}

/// A ``RemoteHost`` whose commands and writes first renew the run's lease on the node when due.
struct LeasedHost: RemoteHost {
  let inner: any RemoteHost
  let lease: NodeLease

  func run(_ command: String) async throws -> CommandOutput {
    try await lease.renewIfDue()
    return try await inner.run(command)
  }

  func write(_ bytes: [UInt8], to path: String, mode: Int) async throws {
    try await lease.renewIfDue()
    try await inner.write(bytes, to: path, mode: mode)
  }

  func upload(localPath: String, to path: String, mode: Int) async throws {
    try await lease.renewIfDue()
    try await inner.upload(localPath: localPath, to: path, mode: mode)
  }

  func read(_ path: String) async throws -> [UInt8]? { try await inner.read(path) }

  func close() async { await inner.close() }
}

extension FleetError.Code {
  /// Another run holds the node's lease.
  public static let nodeLocked = FleetError.Code("provision.nodeLocked", meaning: .failed)
  /// This run's lease on a node was taken over while it worked there.
  public static let nodeLockLost = FleetError.Code("provision.nodeLockLost", meaning: .failed)
}
