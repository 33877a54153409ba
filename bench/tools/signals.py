"""Cross-node wake-up latency, for the choice between PostgreSQL NOTIFY and a RabbitMQ exchange.

  python3 bench/tools/signals.py notify CERTS PORT_A PORT_B [N]
      Two `simpul serve` nodes on one PostgreSQL (ports A and B, the PKI in CERTS, a registry where
      GOV/dukcapil may send layanan.status to GOV/portal): a long poll parks on one node and a
      message is accepted on the same node, then on the other; prints the time from the 202 to
      the poll's answer.
  python3 bench/tools/signals.py amqp PKI AMQPS_PORT VHOST [N]
      Publish to a topic exchange and basic.get from an exclusive queue on the same broker, as
      the bus (PKI/server.pem, EXTERNAL): what the hop through RabbitMQ alone costs.
"""
import http.client, json, ssl, statistics, sys, threading, time, uuid


def pct(lat):
    lat = sorted(lat)
    return f"p50 {statistics.median(lat):.2f}  p90 {lat[int(len(lat) * 0.9)]:.2f}  max {lat[-1]:.2f}"


def notify(certs, a, b, n):
    def conn(port, m):
        c = ssl.create_default_context(cafile=f"{certs}/ca.pem")
        c.load_cert_chain(f"{certs}/members/{m}.pem", f"{certs}/members/{m}.key")
        return http.client.HTTPSConnection("127.0.0.1", port, context=c)

    def run(send_port, poll_port):
        poller, sender, out = conn(poll_port, "GOV_portal"), conn(send_port, "GOV_dukcapil"), []
        for _ in range(n):
            res = {}

            def poll():
                poller.request("GET", "/v1/inbox?max=10&wait=10&lease=30")
                r = poller.getresponse()
                res["b"], res["t"] = json.loads(r.read()), time.perf_counter()

            th = threading.Thread(target=poll)
            th.start()
            time.sleep(0.15)  # the poll parks
            ev = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": "layanan.status", "to": "GOV/portal",
                  "data": {"permohonan_id": str(uuid.uuid4()), "status": "selesai"}}
            sender.request("POST", "/v1/messages", body=json.dumps(ev),
                           headers={"content-type": "application/cloudevents+json"})
            sender.getresponse().read()
            sent = time.perf_counter()
            th.join()
            ids = [m["event"]["id"] for m in res["b"].get("messages", [])]
            poller.request("POST", "/v1/inbox/ack", body=json.dumps({"ids": ids}),
                           headers={"content-type": "application/json"})
            poller.getresponse().read()
            out.append((res["t"] - sent) * 1000)
        return out

    print("same node, ms:", pct(run(a, a)))
    print("across nodes (NOTIFY), ms:", pct(run(a, b)))


def amqp(pki, port, vhost, n):
    import pika

    def conn():
        c = ssl.create_default_context(cafile=f"{pki}/ca.pem")
        c.load_cert_chain(f"{pki}/server.pem", f"{pki}/server.key")
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="localhost", port=port, virtual_host=vhost, ssl_options=pika.SSLOptions(c, "localhost"),
            credentials=pika.credentials.ExternalCredentials()))

    pub, sub = conn().channel(), conn().channel()
    pub.exchange_declare("bench.signals", "topic")
    q = sub.queue_declare("", exclusive=True, auto_delete=True).method.queue
    sub.queue_bind(q, "bench.signals", "#")
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        pub.basic_publish("bench.signals", "inbox.GOV/portal", b"x")
        while not sub.basic_get(q, auto_ack=True)[0]:
            pass
        lat.append((time.perf_counter() - t0) * 1000)
    print("AMQP publish to get, ms:", pct(lat))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "notify":
        notify(args[0], int(args[1]), int(args[2]), int(args[3]) if len(args) > 3 else 40)
    else:
        amqp(args[0], int(args[1]), args[2], int(args[3]) if len(args) > 3 else 200)
