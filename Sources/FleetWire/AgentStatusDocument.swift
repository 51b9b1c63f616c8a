import Foundation

/// What the agent's `GET /status` returns: every field of the engine's status, and the agent's own,
/// in one JSON object. The agent encodes it and the controller decodes it with this one type.
///
/// `Engine` is the engine's status snapshot (`FleetWatch.WatchStatus`); its fields are written at
/// the top level beside the agent's, as docs/watcher.md documents them.
public struct AgentStatusDocument<Engine: Codable & Sendable>: Codable, Sendable {
  /// The engine's status snapshot.
  public var engine: Engine
  /// The replicated directory.
  public var source: String
  /// The target URL; it never holds a secret.
  public var target: String
  /// What `/healthz` answers right now.
  public var healthy: Bool
  /// Successful config reloads (SIGHUP).
  public var reloads: UInt64
  /// Rejected config reloads.
  public var failedReloads: UInt64

  /// Makes a document.
  public init(
    engine: Engine, source: String, target: String, healthy: Bool, reloads: UInt64, failedReloads: UInt64
  ) {
    self.engine = engine
    self.source = source
    self.target = target
    self.healthy = healthy
    self.reloads = reloads
    self.failedReloads = failedReloads
  }

  enum CodingKeys: String, CodingKey {
    case source, target, healthy, reloads, failedReloads
  }

  public init(from decoder: any Decoder) throws {
    engine = try Engine(from: decoder)
    let container = try decoder.container(keyedBy: CodingKeys.self)
    source = try container.decode(String.self, forKey: .source)
    target = try container.decode(String.self, forKey: .target)
    healthy = try container.decode(Bool.self, forKey: .healthy)
    reloads = try container.decode(UInt64.self, forKey: .reloads)
    failedReloads = try container.decode(UInt64.self, forKey: .failedReloads)
  }

  public func encode(to encoder: any Encoder) throws {
    try engine.encode(to: encoder)
    var container = encoder.container(keyedBy: CodingKeys.self)
    try container.encode(source, forKey: .source)
    try container.encode(target, forKey: .target)
    try container.encode(healthy, forKey: .healthy)
    try container.encode(reloads, forKey: .reloads)
    try container.encode(failedReloads, forKey: .failedReloads)
  }

  /// The document as the agent serves it: one line of JSON with sorted keys and ISO 8601 dates.
  public func json() throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.dateEncodingStrategy = .iso8601
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
  }

  /// Reads a document the agent served.
  public static func decode(json: some StringProtocol) throws -> AgentStatusDocument {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return try decoder.decode(AgentStatusDocument.self, from: Data(json.utf8))
  }
}

extension AgentStatusDocument: Equatable where Engine: Equatable {}
