import FleetCore
import FleetHealth
import FleetTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// A health source whose answers the test sets.
final class ScriptedSource: HealthSource {
  let verdict = Mutex(HealthVerdict.healthy)
  let metrics = SnapshotMetrics()

  func health() -> HealthVerdict { verdict.withLock { $0 } }
  func statusJSON() -> [UInt8] { Array(#"{"state":"watching","queueDepth":3}"#.utf8) }
  func metricsText() -> [UInt8] {
    metrics.recordLevel("demo_queue_depth", help: "paths waiting", 3)
    metrics.recordTotal("demo_files_sent_total", help: "files sent", 42)
    return metrics.exposition()
  }
}

@Suite("Health endpoint on a live socket")
struct HealthServerTests {
  let logger = Logger(label: "test")

  @Test func healthzFollowsTheVerdict() async throws {
    let source = ScriptedSource()
    let server = try await HealthServer.start(host: "127.0.0.1", port: 0, source: source, logger: logger)
    #expect(server.port > 0)

    let ok = try HTTPTestClient.request("GET", "/healthz", port: server.port)
    #expect(ok.status == 200)
    #expect(ok.body == "ok\n")

    source.verdict.withLock { $0 = .degraded("12 delete(s) on the backup held by max-delete") }
    let degraded = try HTTPTestClient.request("GET", "/healthz", port: server.port)
    #expect(degraded.status == 200)
    #expect(degraded.body == "degraded: 12 delete(s) on the backup held by max-delete\n")

    source.verdict.withLock { $0 = .unhealthy("state retrying, last error (auth): wrong password") }
    let bad = try HTTPTestClient.request("GET", "/healthz", port: server.port)
    #expect(bad.status == 503)
    #expect(bad.body.contains("wrong password"))
    await server.close()
  }

  @Test func statusIsJSON() async throws {
    let server = try await HealthServer.start(
      host: "127.0.0.1", port: 0, source: ScriptedSource(), logger: logger)
    let response = try HTTPTestClient.request("GET", "/status?pretty=1", port: server.port)
    await server.close()
    #expect(response.status == 200)
    #expect(response.headers["content-type"] == "application/json")
    let object = try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]
    #expect(object?["state"] as? String == "watching")
    #expect(object?["queueDepth"] as? Int == 3)
  }

  @Test func metricsAreParsablePrometheusText() async throws {
    let server = try await HealthServer.start(
      host: "127.0.0.1", port: 0, source: ScriptedSource(), logger: logger)
    let response = try HTTPTestClient.request("GET", "/metrics", port: server.port)
    await server.close()
    #expect(response.status == 200)
    #expect(response.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
    var samples: [String: Double] = [:]
    var types: [String: String] = [:]
    for line in response.body.split(separator: "\n") {
      if line.hasPrefix("# TYPE ") {
        let parts = line.split(separator: " ")
        types[String(parts[2])] = String(parts[3])
      } else if !line.hasPrefix("#") {
        let parts = line.split(separator: " ")
        #expect(parts.count == 2, "sample line \(line) is not `name value`")
        samples[String(parts[0])] = Double(parts[1])
      }
    }
    #expect(types["demo_queue_depth"] == "gauge")
    #expect(types["demo_files_sent_total"] == "counter")
    #expect(samples["demo_queue_depth"] == 3)
    #expect(samples["demo_files_sent_total"] == 42)
  }

  @Test func unknownPathIs404AndOtherMethodsAre405() async throws {
    let server = try await HealthServer.start(
      host: "127.0.0.1", port: 0, source: ScriptedSource(), logger: logger)
    let missing = try HTTPTestClient.request("GET", "/nope", port: server.port)
    let post = try HTTPTestClient.request("POST", "/healthz", port: server.port)
    let delete = try HTTPTestClient.request("DELETE", "/status", port: server.port)
    let head = try HTTPTestClient.request("HEAD", "/healthz", port: server.port)
    await server.close()
    #expect(missing.status == 404)
    #expect(post.status == 405)
    #expect(post.headers["allow"] == "GET, HEAD")
    #expect(delete.status == 405)
    #expect(head.status == 200)
    #expect(head.body.isEmpty)
    #expect(head.headers["content-length"] == "3")
  }

  @Test func portInUseIsAClearError() async throws {
    let first = try await HealthServer.start(
      host: "127.0.0.1", port: 0, source: ScriptedSource(), logger: logger)
    let port = first.port
    let error = await #expect(throws: FleetError.self) {
      _ = try await HealthServer.start(
        host: "127.0.0.1", port: port, source: ScriptedSource(), logger: logger)
    }
    await first.close()
    #expect(error?.code == .healthPortInUse)
    #expect(error?.message.contains("health port \(port) on 127.0.0.1 is already in use") == true)
  }
}

@Suite("Snapshot metrics")
struct SnapshotMetricsTests {
  @Test func totalsBecomeMonotonicCounters() {
    let metrics = SnapshotMetrics()
    metrics.recordTotal("t_total", help: "t", 5)
    metrics.recordTotal("t_total", help: "t", 8)
    #expect(String(decoding: metrics.exposition(), as: UTF8.self).contains("t_total 8"))
    // The source was re-created and counts from zero: the counter keeps growing instead.
    metrics.recordTotal("t_total", help: "t", 2)
    #expect(String(decoding: metrics.exposition(), as: UTF8.self).contains("t_total 10"))
  }
}
