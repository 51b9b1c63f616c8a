/// How one host fared in a multi-host command (`plan`, `up`, `down`, `status`, `exec`, `push`).
///
/// Every such command reports its hosts with this one type; their recaps and the command's
/// ``ExitStatus`` are built from it.
public enum HostOutcome: Sendable, Equatable {
  /// Done; nothing needed changing.
  case ok
  /// Done; something was changed (for `plan`: would be).
  case changed
  /// Reached and logged in, but a step failed: the host may be half done.
  case failed(String)
  /// Reached, but the login was refused or the host key is unknown or changed: nothing was done.
  case auth(String)
  /// Not reached, or the network failed before login: nothing was done.
  case unreachable(String)

  /// The outcome of a host whose work stopped with `error`, by what the error's code means.
  ///
  /// A host whose own settings were invalid or whose work was cancelled counts as failed: its work
  /// was not done, and only ``FleetError/Meaning/unreachable`` and ``FleetError/Meaning/auth``
  /// promise that nothing was touched.
  public init(_ error: FleetError) {
    switch error.code.meaning {
    case .unreachable: self = .unreachable(error.description)
    case .auth: self = .auth(error.description)
    case .failed, .invalidInput, .invalidInventory, .cancelled: self = .failed(error.description)
    }
  }

  /// Whether the host's work was done (`ok` or `changed`).
  public var succeeded: Bool {
    switch self {
    case .ok, .changed: true
    case .failed, .auth, .unreachable: false
    }
  }

  /// The word recaps show: `ok`, `changed`, `failed`, `auth` or `unreachable`.
  public var word: String {
    switch self {
    case .ok: "ok"
    case .changed: "changed"
    case .failed: "failed"
    case .auth: "auth"
    case .unreachable: "unreachable"
    }
  }

  /// What went wrong; empty for `ok` and `changed`.
  public var detail: String {
    switch self {
    case .ok, .changed: ""
    case .failed(let why), .auth(let why), .unreachable(let why): why
    }
  }
}
