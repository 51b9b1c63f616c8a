import Foundation

/// Why the engine sends nothing: the source is not the directory it replicated so far.
///
/// While a hold lasts the engine's state is ``WatchStatus/State/sourceHeld`` (unhealthy), changes
/// stay journaled, and the source is looked at again every second; the hold ends by itself when
/// the recorded source is back, or when an operator accepts the source as it is now.
public struct SourceHold: Sendable, Codable, Equatable {
  /// What is wrong with the source; the raw values are what `/status` shows and never change.
  public enum Kind: String, Sendable, Codable, CaseIterable {
    /// The source path is gone, not a directory, or cannot be read.
    case missing = "missing"
    /// The source is on another filesystem than the recorded one.
    case otherFilesystem = "otherFilesystem"
    /// The source is another directory than the recorded one (an unmounted mountpoint, re-created).
    case otherDirectory = "otherDirectory"
    /// The source is empty, but held data when its identity was recorded.
    case emptied = "emptied"
    /// No identity is recorded yet, the source is empty, and the backup holds data.
    case backupNotEmpty = "backupNotEmpty"
    /// No identity is recorded yet, the source is empty, and the backup cannot be listed.
    case backupUnknown = "backupUnknown"
    /// The source came back; its watches are being set up again before transfers resume.
    case rewatching = "rewatching"
  }

  /// What is wrong, for programs.
  public var kind: Kind
  /// What happened, what was expected, what is there now, what to check, and the command that
  /// accepts the source as it is now.
  public var message: String
  /// When the hold began.
  public var since: Date

  /// Makes a hold.
  public init(kind: Kind, message: String, since: Date) {
    self.kind = kind
    self.message = message
    self.since = since
  }
}
