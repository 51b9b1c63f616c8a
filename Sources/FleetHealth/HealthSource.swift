/// The verdict `GET /healthz` reports: healthy, or not and why.
public struct HealthVerdict: Sendable, Equatable {
  /// Whether the process does its job right now.
  public var isHealthy: Bool
  /// Why it is not healthy (shown in the 503 body), or, when healthy, what still needs a person
  /// (degraded: shown in the 200 body); empty when all is well.
  public var reason: String

  /// A healthy verdict.
  public static let healthy = HealthVerdict(isHealthy: true, reason: "")

  /// A healthy verdict that still needs a person: the process does its job, but holds something
  /// back on purpose (e.g. deletes over the delete limit). `/healthz` answers 200 `degraded: REASON`.
  public static func degraded(_ reason: String) -> HealthVerdict {
    HealthVerdict(isHealthy: true, reason: reason)
  }

  /// Whether the verdict is healthy but degraded (see ``degraded(_:)``).
  public var isDegraded: Bool { isHealthy && !reason.isEmpty }

  /// An unhealthy verdict with the reason an operator reads.
  public static func unhealthy(_ reason: String) -> HealthVerdict {
    HealthVerdict(isHealthy: false, reason: reason)
  }

  /// Makes a verdict.
  public init(isHealthy: Bool, reason: String) {
    self.isHealthy = isHealthy
    self.reason = reason
  }
}

/// What the health endpoint serves; the server knows nothing else about the process it reports on.
///
/// The methods are called on the server's event loop for every request: keep them cheap and
/// non-blocking (snapshot a value under a lock, encode it).
public protocol HealthSource: Sendable {
  /// The verdict for `GET /healthz`.
  func health() -> HealthVerdict
  /// The UTF-8 JSON body for `GET /status`.
  func statusJSON() -> [UInt8]
  /// The Prometheus text exposition for `GET /metrics`.
  func metricsText() -> [UInt8]
}

/// A ``HealthSource`` made of three closures, for wiring and tests.
public struct ClosureHealthSource: HealthSource {
  private let healthBody: @Sendable () -> HealthVerdict
  private let statusBody: @Sendable () -> [UInt8]
  private let metricsBody: @Sendable () -> [UInt8]

  /// Makes a source from closures that answer each endpoint.
  public init(
    health: @escaping @Sendable () -> HealthVerdict,
    status: @escaping @Sendable () -> [UInt8],
    metrics: @escaping @Sendable () -> [UInt8]
  ) {
    self.healthBody = health
    self.statusBody = status
    self.metricsBody = metrics
  }

  /// Calls the health closure.
  public func health() -> HealthVerdict { healthBody() }
  /// Calls the status closure.
  public func statusJSON() -> [UInt8] { statusBody() }
  /// Calls the metrics closure.
  public func metricsText() -> [UInt8] { metricsBody() }
}
