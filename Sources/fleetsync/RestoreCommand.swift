import ArgumentParser
import FleetCore
import FleetProvision
import FleetSSH
import Foundation

/// `fleetsync restore`: gets a protected directory, a path beneath one or one file back from its backup.
struct RestoreCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "restore",
    abstract: "Restore a protected directory, a path beneath one, or one file from its backup.",
    discussion: """
      HOST:PATH is a path on a source host under one of its protected directories. Without --at the \
      latest state (the mirror) is restored; with --at TIME the tree as it was then: the mirror, with \
      every version newer than TIME laid over it (newest first, so the oldest wins), without the \
      files written after TIME. rsync runs as root on the destination host, through the backup's \
      daemon, into a staging directory that is then moved in; nothing is deleted at the destination \
      unless --delete is given. Watchers of the protected directories written to are paused meanwhile. \
      See docs/restore.md.

      TIME is ISO 8601 with a zone (2026-11-28T00:05:01Z, 2026-11-28T01:05:01+01:00) or a version \
      stamp as `fleetsync versions` prints it (2026-11-28T00-05-01.123Z).

      For a restore: 0 done (or listed, with --dry-run); 2 a step failed on the host; 3 the host could \
      not be reached; 64 bad arguments, a path under no protected directory, nothing to restore, or \
      --delete refused.

      """ + ExitStatus.helpText)

  @Option(name: [.short, .long], help: "The inventory file.")
  var inventory: String = "inventory.yaml"

  @Argument(help: ArgumentHelp("What to restore.", valueName: "HOST:PATH"))
  var place: String

  @Option(
    name: .long, help: ArgumentHelp("Restore the state as of this time (see above).", valueName: "TIME"))
  var at: String?

  @Option(
    name: .long,
    help: ArgumentHelp("Restore to this path (any host of the inventory).", valueName: "HOST:PATH"))
  var to: String?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "The backup module to read when the directory has several.", valueName: "BACKUP/MODULE"))
  var from: String?

  @Flag(name: .long, help: "List what would change; change nothing.")
  var dryRun = false

  @Flag(name: .long, help: "Delete at the destination what the restored tree does not have.")
  var delete = false

  @Flag(name: .long, help: "Print the outcome as JSON.")
  var json = false

  func run() async throws {
    let inventory = try InventoryOptions(inventory: self.inventory).load()
    let request = try await reportingFailures { try makeRequest() }
    let progress = RestoreProgress()
    let result = try await reportingHostFailures(progress) {
      try await SSHClient.withClient(threads: 4) { client in
        let provisioner = try Provisioner(
          inventory: inventory, connector: SSHHostConnector(client: client), options: ProvisionOptions())
        return try await provisioner.restore(request) { progress($0) }
      }
    }
    progress.finish()
    if json {
      print(try RestoreOutput.json(result))
    } else {
      for line in RestoreOutput.lines(result) { print(line) }
    }
  }

  func makeRequest() throws -> RestoreRequest {
    var request = RestoreRequest(place: try HostPath(parsing: place))
    request.at = try at.map(RestoreTime.init(parsing:))
    request.to = try to.map(HostPath.init(parsing:))
    request.from = from
    request.dryRun = dryRun
    request.delete = delete
    return request
  }
}

/// `fleetsync versions`: the versions of a file or directory kept on its backup.
struct VersionsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "versions",
    abstract: "List the versions of a file or directory kept on its backup, with times and sizes.",
    discussion: """
      A version STAMP (the UTC time a transfer started) holds what that transfer replaced or deleted: \
      `fleetsync restore --at STAMP` gets the state just before it back. Times of files are the backup \
      host's local time, as rsync lists them.

      """ + ExitStatus.helpText)

  @Option(name: [.short, .long], help: "The inventory file.")
  var inventory: String = "inventory.yaml"

  @Argument(help: ArgumentHelp("The file or directory.", valueName: "HOST:PATH"))
  var place: String

  @Option(
    name: .long,
    help: ArgumentHelp(
      "The backup module to read when the directory has several.", valueName: "BACKUP/MODULE"))
  var from: String?

  @Flag(name: .long, help: "Print the listing as JSON.")
  var json = false

  func run() async throws {
    let inventory = try InventoryOptions(inventory: self.inventory).load()
    let place = try await reportingFailures { try HostPath(parsing: self.place) }
    let progress = RestoreProgress()
    let listing = try await reportingHostFailures(progress) {
      try await SSHClient.withClient(threads: 4) { client in
        let provisioner = try Provisioner(
          inventory: inventory, connector: SSHHostConnector(client: client), options: ProvisionOptions())
        return try await provisioner.versions(of: place, from: from)
      }
    }
    progress.finish()
    if json {
      print(try RestoreOutput.encode(listing))
    } else {
      for line in RestoreOutput.lines(listing) { print(line) }
    }
  }
}

extension InventoryOptions {
  init(inventory: String) {
    self.init()
    self.inventory = inventory
  }
}

/// Runs a one-host command: usage errors end it with 64/65, a failed or unreachable host with
/// ``ExitStatus`` of that host's outcome (2, 3), after the message.
func reportingHostFailures<T>(_ progress: RestoreProgress, _ body: () async throws -> T) async throws -> T {
  do {
    return try await body()
  } catch let error as FleetError {
    progress.finish()
    switch error.code.meaning {
    case .invalidInput, .invalidInventory, .cancelled: throw Failure.report(error)
    case .unreachable, .auth, .failed:
      _ = Failure.report(error)
      throw ExitCode(ExitStatus([HostOutcome(error)]).rawValue)
    }
  }
}

/// Progress of `restore` and `versions`: one live line on a terminal, nothing otherwise.
final class RestoreProgress: Sendable {
  let live = isatty(STDERR_FILENO) == 1

  func callAsFunction(_ step: String) {
    if live { FileHandle.standardError.write(Data("\r\u{1B}[K\(step)…".utf8)) }
  }

  func finish() {
    if live { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
  }
}
