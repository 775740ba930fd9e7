import Foundation
import Mustache

/// The daemon's status page: server-rendered HTML with inline SVG charts and no external assets (servers
/// often have no internet), refreshed by the browser every 10 s. Its figures are `status --json`'s.
enum StatusPage {
    static func render(server: String, serverID: String, status: [Gateway.EndpointStatus], now: Date) -> String {
        let context: [String: Any] = [
            "server": server,
            "serverID": serverID,
            "generated": ISO8601DateFormatter().string(from: now),
            "endpoints": status.map { endpoint($0, now: now) },
            "networkLimit": status.first?.networkLimit?.summary ?? "none",
        ]
        return template.render(context)
    }

    private static func endpoint(_ item: Gateway.EndpointStatus, now: Date) -> [String: Any] {
        let lag = item.head.map { $0 > item.cursor ? $0 - item.cursor : 0 }
        var view: [String: Any] = [
            "id": item.endpoint.id,
            "path": item.endpoint.path,
            "share": item.endpoint.share,
            "health": item.health,
            "healthClass": item.health.lowercased().replacingOccurrences(of: " ", with: "-"),
            "cursor": item.cursor,
            "head": item.head.map(String.init) ?? "unreachable",
            "lag": lag.map(String.init) ?? "-",
            "entries": item.entries,
            "pending": item.pendingChanges,
            "notSyncing": item.filesNotSyncing,
            "lastSync": item.lastSync.map { "\(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: $0.started))): \($0.summary)" } ?? "never",
        ]
        if let error = item.shareError { view["shareError"] = error }
        let sessions = (item.activity?.sessions ?? []).reversed().map { session -> [String: Any] in
            ["started": ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: session.started)), "trigger": session.trigger,
             "summary": session.summary, "failed": session.failed]
        }
        view["sessions"] = sessions
        view["hasSessions"] = !sessions.isEmpty
        let hours = (item.activity ?? SyncActivity()).last24Hours(now: now)
        view["activityChart"] = barChart(title: "files synced per hour, last 24 h",
                                          series: [("uploaded", "#2b6cb0", hours.map { Double($0.uploadedFiles) }),
                                                   ("downloaded", "#2f855a", hours.map { Double($0.downloadedFiles) }),
                                                   ("failed passes", "#c53030", hours.map { Double($0.failedPasses) })],
                                          labels: hours.map { hourLabel($0.start) })
        view["bytesChart"] = barChart(title: "bytes synced per hour, last 24 h",
                                       series: [("uploaded", "#2b6cb0", hours.map { Double($0.uploadedBytes) }),
                                                ("downloaded", "#2f855a", hours.map { Double($0.downloadedBytes) }),
                                                ("recalled", "#b7791f", hours.map { Double($0.recallBytes) })],
                                       labels: hours.map { hourLabel($0.start) }, bytes: true)
        if let tiering = item.tiering {
            let recalls = tiering.recalls ?? RecallEngine.Figures()
            let attempts = recalls.recalls + recalls.failures
            view["tiering"] = [
                "stubs": tiering.stubs,
                "tiered": ByteFormat.string(tiering.sizeTiered),
                "cache": ByteFormat.string(tiering.cacheSize),
                "recalls": recalls.recalls,
                "recallFailures": recalls.failures,
                "recallBytes": ByteFormat.string(recalls.bytes),
                "successRate": attempts == 0 ? "-" : String(format: "%.1f %%", Double(recalls.recalls) * 100 / Double(attempts)),
                "hitRate": recalls.hitRate.map { String(format: "%.1f %%", $0 * 100) } ?? "-",
                "heatChart": barChart(title: "cache by last access", series: [("cached bytes", "#805ad5", tiering.cacheByLastAccess.map { Double($0.bytes) })],
                                      labels: tiering.cacheByLastAccess.map(\.label), bytes: true),
                "recallChart": barChart(title: "recalls per hour, last 24 h", series: [("recalls", "#b7791f", hours.map { Double($0.recalls) })],
                                        labels: hours.map { hourLabel($0.start) }),
            ] as [String: Any]
        }
        view["servers"] = (item.servers ?? []).map { server -> [String: Any] in
            let seen = now.timeIntervalSince1970 - server.lastSeen
            return ["name": server.name, "serverID": server.serverID, "endpoint": server.endpoint,
                    "lastSeen": ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: server.lastSeen)),
                    "ago": Self.age(seen), "online": server.isOnline(now: now) ? "online" : "offline",
                    "sequence": server.lastAppliedSequence,
                    "lag": item.head.map { String($0 > server.lastAppliedSequence ? $0 - server.lastAppliedSequence : 0) } ?? "-"]
        }
        return view
    }

    static func age(_ seconds: Double) -> String {
        switch seconds {
        case ..<120: return "\(Int(max(0, seconds))) s ago"
        case ..<7200: return "\(Int(seconds / 60)) min ago"
        case ..<172_800: return "\(Int(seconds / 3600)) h ago"
        default: return "\(Int(seconds / 86_400)) days ago"
        }
    }

    private static func hourLabel(_ start: Int64) -> String {
        var time = time_t(start)
        var parts = tm()
        localtime_r(&time, &parts)
        return String(format: "%02d", parts.tm_hour)
    }

    /// A grouped bar chart as inline SVG (values of each series side by side per label).
    static func barChart(title: String, series: [(name: String, color: String, values: [Double])], labels: [String], bytes: Bool = false) -> String {
        let width = 720.0, height = 180.0, left = 64.0, bottom = 24.0, top = 8.0
        let maximum = max(series.flatMap(\.values).max() ?? 0, 1)
        let groupWidth = (width - left) / Double(max(labels.count, 1))
        let barWidth = max(1, (groupWidth - 2) / Double(max(series.count, 1)))
        let scale = (height - bottom - top) / maximum
        func format(_ value: Double) -> String { bytes ? ByteFormat.string(Int64(value)) : (value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)) }
        var svg = "<svg role=\"img\" aria-label=\"\(escape(title))\" viewBox=\"0 0 \(Int(width)) \(Int(height + 18))\" width=\"\(Int(width))\" height=\"\(Int(height + 18))\" xmlns=\"http://www.w3.org/2000/svg\">"
        svg += "<title>\(escape(title))</title>"
        svg += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width)\" y2=\"\(height - bottom)\" stroke=\"#999\"/>"
        svg += "<text x=\"\(left - 4)\" y=\"\(top + 10)\" text-anchor=\"end\" font-size=\"10\">\(escape(format(maximum)))</text>"
        svg += "<text x=\"\(left - 4)\" y=\"\(height - bottom)\" text-anchor=\"end\" font-size=\"10\">0</text>"
        for (index, label) in labels.enumerated() {
            let x = left + Double(index) * groupWidth
            for (number, line) in series.enumerated() where index < line.values.count {
                let value = line.values[index]
                let barHeight = value * scale
                svg += "<rect x=\(quote(x + 1 + Double(number) * barWidth)) y=\(quote(height - bottom - barHeight)) width=\(quote(barWidth)) height=\(quote(barHeight)) fill=\"\(line.color)\"><title>\(escape("\(label) \(line.name): \(format(value))"))</title></rect>"
            }
            if labels.count <= 8 || index % 3 == 0 {
                svg += "<text x=\(quote(x + groupWidth / 2)) y=\(quote(height - bottom + 14)) text-anchor=\"middle\" font-size=\"10\">\(escape(label))</text>"
            }
        }
        for (number, line) in series.enumerated() {
            let x = left + Double(number) * 140
            svg += "<rect x=\(quote(x)) y=\(quote(height + 4)) width=\"10\" height=\"10\" fill=\"\(line.color)\"/><text x=\(quote(x + 14)) y=\(quote(height + 13)) font-size=\"11\">\(escape(line.name))</text>"
        }
        return svg + "</svg>"
    }

    private static func quote(_ value: Double) -> String { "\"" + String(format: "%.1f", value) + "\"" }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    // Mustache escapes every {{value}}; the charts are built above from escaped text and go in raw ({{{…}}}).
    static let template = try! MustacheTemplate(string: """
    <!DOCTYPE html>
    <html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
    <title>Tiergate — {{server}}</title>
    <style>
    body{font-family:system-ui,sans-serif;margin:1.5em;color:#1a202c}
    h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
    table{border-collapse:collapse;margin:.5em 0} th{white-space:nowrap} td,th{padding:.2em .8em;border-bottom:1px solid #e2e8f0;text-align:left;vertical-align:top}
    .health{font-weight:bold;padding:.1em .5em;border-radius:.3em}
    .healthy{background:#c6f6d5}.pending{background:#fefcbf}.error{background:#fed7d7}.no-activity{background:#e2e8f0}
    section{border:1px solid #cbd5e0;border-radius:.4em;padding:0 1em 1em;margin-bottom:1.5em}
    </style></head><body>
    <h1>Tiergate server {{server}}</h1>
    <p>server id <code>{{serverID}}</code> · network limit <span data-network-limit>{{networkLimit}}</span> · generated {{generated}} · <a href="/metrics">metrics</a> · <a href="/status.json">status.json</a></p>
    {{#endpoints}}
    <section id="endpoint-{{id}}">
    <h2>Endpoint {{id}}: <code>{{path}}</code> <span class="health {{healthClass}}" data-health>{{health}}</span></h2>
    <table>
    <tr><th>share</th><td><code>{{share}}</code></td></tr>
    <tr><th>cursor / head</th><td><span data-cursor>{{cursor}}</span> / <span data-head>{{head}}</span> (lag <span data-lag>{{lag}}</span>)</td></tr>
    <tr><th>items</th><td data-entries>{{entries}}</td></tr>
    <tr><th>pending changes</th><td data-pending>{{pending}}</td></tr>
    <tr><th>files not syncing</th><td data-not-syncing>{{notSyncing}}</td></tr>
    <tr><th>last sync</th><td>{{lastSync}}</td></tr>
    {{#shareError}}<tr><th>share error</th><td>{{shareError}}</td></tr>{{/shareError}}
    </table>
    <h3>Sync activity</h3>
    {{{activityChart}}}
    {{{bytesChart}}}
    {{#hasSessions}}
    <h3>Last sessions</h3>
    <table><tr><th>started</th><th>trigger</th><th>result</th></tr>
    {{#sessions}}<tr><td>{{started}}</td><td>{{trigger}}</td><td>{{summary}}</td></tr>{{/sessions}}
    </table>
    {{/hasSessions}}
    {{#tiering}}
    <h3>Cloud tiering</h3>
    <table>
    <tr><th>stubs</th><td data-stubs>{{stubs}}</td></tr>
    <tr><th>size tiered</th><td>{{tiered}}</td></tr>
    <tr><th>cache size</th><td>{{cache}}</td></tr>
    <tr><th>recalls</th><td><span data-recalls>{{recalls}}</span> ({{recallBytes}}), <span data-recall-failures>{{recallFailures}}</span> failed, success rate {{successRate}}</td></tr>
    <tr><th>cache hit rate</th><td>{{hitRate}}</td></tr>
    </table>
    {{{heatChart}}}
    {{{recallChart}}}
    {{/tiering}}
    <h3>Servers of this share</h3>
    <table><tr><th>server</th><th>endpoint</th><th>state</th><th>last seen</th><th>applied</th><th>lag</th></tr>
    {{#servers}}<tr data-server="{{serverID}}"><td>{{name}}</td><td>{{endpoint}}</td><td>{{online}}</td><td>{{ago}} ({{lastSeen}})</td><td>{{sequence}}</td><td>{{lag}}</td></tr>{{/servers}}
    </table>
    </section>
    {{/endpoints}}
    </body></html>
    """)
}
