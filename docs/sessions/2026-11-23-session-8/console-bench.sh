#!/usr/bin/env bash
# console-bench.sh BIN PORT LABEL: time GET /console/customers lists at 1M (tenant 900001, PostgreSQL customers_bench)
set -u
BIN=$1; PORT=$2; LABEL=$3
DB=postgres://postgres@127.0.0.1:5432/customers_bench
export DATABASE_URL=$DB SCRM_MASTER_KEY=0000000000000000000000000000000000000000000000000000000000000001
export SCRM_LOG_FORMAT=json RUST_LOG=warn
# An admin of the bench tenant (the generator writes no tenant row and no user).
psql -h 127.0.0.1 -U postgres -d customers_bench -qc "INSERT INTO tenant (id, name, status, created_at, updated_at) VALUES (900001, 'bench', 1, 0, 0) ON CONFLICT DO NOTHING"
"$BIN" user create --username benchadmin --role admin --password bench-password-1 >/dev/null 2>&1 || true
psql -h 127.0.0.1 -U postgres -d customers_bench -qc "UPDATE app_user SET tenant_id = 900001 WHERE username = 'benchadmin'"
"$BIN" serve --role api --port "$PORT" > /tmp/console-bench-$LABEL.log 2>&1 &
PID=$!
for i in $(seq 1 120); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 1; done
JAR=/tmp/console-bench-$LABEL.jar; rm -f $JAR
curl -s -c $JAR -o /dev/null -X POST "http://127.0.0.1:$PORT/console/login" --data 'username=benchadmin&password=bench-password-1&next=/console/customers'
P="psql -h 127.0.0.1 -U postgres -d customers_bench -Atc"
TAG=$($P "SELECT tag_id FROM tag_count WHERE tenant_id = 900001 ORDER BY customer_count DESC LIMIT 1")
BEFORE40K=$($P "SELECT id FROM customer WHERE tenant_id = 900001 ORDER BY id DESC OFFSET 799979 LIMIT 1")
BEFORE2K=$($P "SELECT c.id FROM customer c WHERE c.tenant_id = 900001 AND EXISTS (SELECT 1 FROM customer_tag ct WHERE ct.tenant_id = 900001 AND ct.tag_id = $TAG AND ct.customer_id = c.id) ORDER BY c.id DESC OFFSET 39979 LIMIT 1")
echo "$LABEL: tag $TAG, page-40000 cursor $BEFORE40K, tag page-2000 cursor $BEFORE2K; load $(cut -d' ' -f1-3 /proc/loadavg)"
for q in "" "page=2000" "page=40000" "before=$BEFORE40K&page=40000" "tagIds=$TAG&page=2000" "tagIds=$TAG&before=$BEFORE2K&page=2000" "keyword=%E7%8E%8B%E4%BC%9F"; do
  ts=""
  for i in 1 2 3 4 5 6; do
    t=$(curl -s -b $JAR -o /tmp/console-bench-body.html -w '%{time_total}' "http://127.0.0.1:$PORT/console/customers?$q")
    [ $i -gt 1 ] && ts="$ts $(awk -v t=$t 'BEGIN{printf "%.0f", t*1000}')"
  done
  total=$(grep -o 'id="customer-total">[0-9]*' /tmp/console-bench-body.html | grep -o '[0-9]*$')
  rows=$(grep -c 'class="customer-row"' /tmp/console-bench-body.html)
  echo "  /console/customers?$q  ms:$ts  (total $total, rows $rows)"
done
kill $PID; wait $PID 2>/dev/null
