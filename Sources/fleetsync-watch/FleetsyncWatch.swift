import ArgumentParser
import FleetAgent

/// `fleetsync-watch`: replicate one directory to an rsync daemon as it changes.
@main
struct FleetsyncWatch: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fleetsync-watch",
    abstract: "Replicate one directory to an rsync daemon as it changes.",
    discussion: """
      Exit status of run: 0 clean stop, 64 usage or configuration error, 69 health port in use, \
      1 other fatal error. See docs/watcher.md.
      """,
    subcommands: [Run.self, Check.self, Resume.self]
  )
}

/// `fleetsync-watch run`: the agent, from a config file or from the quick form's options.
///
/// The quick form's options are the agent's config keys (one table, `FleetWire.WatcherConfigKey`),
/// so they are read by ``FleetAgent/AgentOptions`` rather than declared here one by one.
struct Run: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Watch a directory and replicate it until stopped (SIGTERM/SIGINT; SIGHUP reloads --config).",
    usage: """
      fleetsync-watch run --config <file> [--log-level <level>]
      \(AgentOptions.usage(command: "fleetsync-watch run", others: ["[--log-level <level>]"]))
      """,
    discussion: """
      Either --config FILE, or --source and --target with the other options. The rsync password comes \
      from --password-file (mode 600) or the RSYNC_PASSWORD environment variable, never from the \
      command line.

      Quick-form options (each follows the rules of the config key of the same name):
      \(AgentOptions.help)
      """
  )

  @Option(name: .long, help: ArgumentHelp("Config file (key = value lines).", valueName: "file"))
  var config: String?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Log level: \(WatchAgent.logLevels.joined(separator: ", ")).", valueName: "level"))
  var logLevel: String = "info"

  /// Everything else: the quick form's options, checked by `AgentOptions`.
  @Argument(parsing: .allUnrecognized, help: .hidden)
  var quickForm: [String] = []

  func run() async throws {
    let status = await WatchAgent.main(configFile: config, quickForm: quickForm, logLevel: logLevel)
    if status != 0 { throw ExitCode(status) }
  }
}

/// `fleetsync-watch check`: is the agent of a config healthy, unhealthy, or hung? For supervisors
/// other than systemd (and people), which have no watchdog of their own.
struct Check: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Ask the agent of a config file how it is, on its health port.",
    discussion: """
      Prints one line and exits 0 when the agent is healthy, 1 when it answers but is not (waiting for \
      its source, the backup unreachable: a restart would not help), 2 when it is hung (no answer \
      within the timeout, or its event loop has stalled: restart it), 64 when the config cannot be \
      read or sets no health-port.
      """
  )

  @Option(name: .long, help: ArgumentHelp("The agent's config file (key = value lines).", valueName: "file"))
  var config: String

  @Option(name: .long, help: ArgumentHelp("Seconds to wait for the answer.", valueName: "seconds"))
  var timeout: Int = 5

  func run() throws {
    let status = HealthCheck.main(configFile: config, timeoutSeconds: timeout)
    if status != 0 { throw ExitCode(status) }
  }
}

/// `fleetsync-watch resume`: asks the running watcher of a config to release what it holds.
struct Resume: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Ask the running watcher of a config to apply held deletes, accept its source or clear its mass-change alarm.",
    discussion: """
      Writes a request file into the watcher's state directory and waits for the watcher to act on it \
      and remove it. A request not taken within --wait is withdrawn. Exit status: 0 taken, \
      75 not taken (is the watcher running?), 64 usage or configuration error, 1 other failure.
      """
  )

  @Option(name: .long, help: ArgumentHelp("The watcher's config file.", valueName: "file"))
  var config: String

  @Flag(name: .long, help: "Apply the deletes the delete limit holds (once: what is held now).")
  var deletes = false

  @Flag(name: .long, help: "Accept the source as it is now as the real source.")
  var acceptSource = false

  @Flag(name: .long, help: "Clear the mass-change alarm, so pruning of versions may resume.")
  var massChange = false

  @Option(name: .long, help: ArgumentHelp("Seconds to wait for the watcher (default 120).", valueName: "s"))
  var wait: Int = 120

  func validate() throws {
    guard (1...3600).contains(wait) else { throw ValidationError("--wait must be 1 to 3600 seconds") }
  }

  func run() async throws {
    let status = await OperatorResume.main(
      configFile: config, releaseDeletes: deletes, acceptSource: acceptSource, clearMassChange: massChange,
      wait: .seconds(wait),
      output: { print($0) },
      errorOutput: AgentOutput.standardError)
    if status != 0 { throw ExitCode(status) }
  }
}
