import FleetCore

extension FleetError.Code {
  /// The agent's config file or command line is wrong (exit status 64).
  public static let agentConfig = FleetError.Code("agent.config", meaning: .invalidInput)
}

/// The exit statuses of `fleetsync-watch`, documented in docs/watcher.md.
public enum AgentExitStatus {
  /// A clean stop (SIGTERM, SIGINT).
  public static let success: Int32 = 0
  /// Any other fatal error: the engine failed while running, an internal error.
  public static let failure: Int32 = 1
  /// Usage or configuration error (EX_USAGE): nothing was started.
  public static let usage: Int32 = 64
  /// The health port is taken (EX_UNAVAILABLE).
  public static let unavailable: Int32 = 69
}
