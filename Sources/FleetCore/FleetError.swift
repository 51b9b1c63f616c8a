/// An error from any fleetsync module: a stable code, a message for people, and what caused it.
///
/// Modules extend ``FleetError/Code`` with their own codes; the command-line tools map codes to
/// exit statuses. Messages never carry secrets: callers pass redacted values only.
public struct FleetError: Error, Sendable, CustomStringConvertible {
  /// A stable, machine-readable error category.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    /// The code's name, e.g. `ssh.hostKeyChanged`.
    public let name: String

    /// Makes a code; modules declare theirs as static constants.
    public init(_ name: String) { self.name = name }

    public var description: String { name }

    /// The input (arguments, config, inventory) is wrong; nothing was touched.
    public static let invalidInput = Code("invalidInput")
    /// A local or remote I/O operation failed.
    public static let io = Code("io")
    /// The operation ran past its deadline.
    public static let timeout = Code("timeout")
    /// The operation was cancelled.
    public static let cancelled = Code("cancelled")
    /// A bug or an impossible state.
    public static let `internal` = Code("internal")
  }

  /// What went wrong, by category.
  public var code: Code
  /// A message for people: what happened and, where known, what to do.
  public var message: String
  /// The underlying error, if any.
  public var cause: (any Error & Sendable)?

  /// Makes an error value.
  public init(_ code: Code, _ message: String, cause: (any Error & Sendable)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  public var description: String {
    guard let cause else { return message }
    return "\(message): \(cause)"
  }
}

extension FleetError {
  /// Wraps any error as a ``FleetError``, keeping one that already is.
  public static func wrap(
    _ error: any Error, code: Code = .internal, _ message: @autoclosure () -> String
  ) -> FleetError {
    if let fleet = error as? FleetError { return fleet }
    if error is CancellationError { return FleetError(.cancelled, "cancelled") }
    return FleetError(code, message(), cause: SendableErrorBox(String(describing: error)))
  }
}

/// A non-Sendable error reduced to its description so it can travel across tasks.
public struct SendableErrorBox: Error, Sendable, CustomStringConvertible {
  /// The original error's description.
  public let description: String
  /// Boxes a description.
  public init(_ description: String) { self.description = description }
}
