import FleetCore
import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#endif

/// The prune-hold marker `.fleetsync-versions/.hold-INSTANCE` on the backup module, written and
/// removed through the rsync daemon with the transfers' password file.
///
/// INSTANCE is the name of the watcher's state directory (the instance name for watchers
/// `fleetsync up` provisions). The daemon's filter lets clients touch nothing else under
/// `.fleetsync-versions/`; removal deletes only this name, so other watchers' holds stay.
struct MassChangeMarker: Sendable {
  /// The marker's file name: `.hold-INSTANCE`.
  let name: String
  /// Where the local copy of the marker and an empty directory live (in the state directory).
  let scratch: String
  /// The module root's versions directory: `rsync://USER@HOST:PORT/MODULE/.fleetsync-versions/`.
  let destination: String

  init(config: WatchConfig) {
    name = ".hold-" + (config.stateDir.split(separator: "/").last.map(String.init) ?? "watcher")
    scratch = config.stateDir + "/mass-change-marker"
    let t = config.target
    destination =
      RsyncTarget(user: t.user, host: t.host, port: t.port, module: t.module).url + "/.fleetsync-versions/"
  }

  /// rsync's arguments that write the marker (its local copy at `file`).
  func placeArguments(_ command: RsyncCommand, file: String) -> [String] {
    options(command) + ["-a", file, destination]
  }

  /// rsync's arguments that delete the marker and nothing else (`empty`: an empty directory).
  func removeArguments(_ command: RsyncCommand, empty: String) -> [String] {
    options(command) + [
      "-r", "--delete", "--include=/" + Self.literal(name), "--exclude=*", empty + "/", destination,
    ]
  }

  /// Writes the marker, saying why in its content; the problem, or nil when it landed.
  func place(_ command: RsyncCommand, why: String) async -> String? {
    let file = scratch + "/" + name
    guard mkdirs(), RsyncCommand.writeScratch(Array((why + "\n").utf8), to: file) else {
      return "cannot write \(file): \(String(cString: strerror(errno)))"
    }
    return await run(command, placeArguments(command, file: file))
  }

  /// Removes the marker; the problem, or nil when it is gone.
  func remove(_ command: RsyncCommand) async -> String? {
    let empty = scratch + "/empty"
    guard mkdirs(), mkdir(empty, 0o700) == 0 || errno == EEXIST else {
      return "cannot make \(empty): \(String(cString: strerror(errno)))"
    }
    return await run(command, removeArguments(command, empty: empty))
  }

  private func mkdirs() -> Bool {
    mkdir(scratch, 0o700) == 0 || errno == EEXIST
  }

  private func options(_ command: RsyncCommand) -> [String] {
    let config = command.config
    var args = [
      "--timeout=\(RsyncCommand.seconds(config.ioTimeout))",
      "--contimeout=\(RsyncCommand.seconds(config.connectTimeout))",
    ]
    if let pw = config.passwordFile { args.append("--password-file=\(pw)") }
    return args
  }

  private func run(_ command: RsyncCommand, _ arguments: [String]) async -> String? {
    // Unconfined: the marker's copy is in the state directory, outside what transfers may read.
    var plain = command
    plain.sandbox = nil
    switch await plain.execute(arguments: arguments) {
    case .exited(0, _, _, _): return nil
    case .exited(let code, _, let err, _):
      return "rsync exit \(code) writing to \(destination): \(RsyncCommand.stderrTail(err))"
    case .ended(let outcome): return outcome.message ?? "rsync did not run"
    }
  }

  /// `text` as an rsync filter pattern that matches only itself.
  static func literal(_ text: String) -> String {
    let wild: Set<Character> = ["*", "?", "["]
    guard text.contains(where: { wild.contains($0) }) else { return text }
    return text.reduce(into: "") { out, c in
      if wild.contains(c) || c == "\\" { out.append("\\") }
      out.append(c)
    }
  }
}
