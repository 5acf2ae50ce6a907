#!/usr/bin/env bash
# Start the local services scrm's tests use, if they are down, and wait until they answer.
# The commands are those of ../shared/SERVICES.md (Debian packages); on a machine without the
# packages, install them first: apt-get install -y postgresql mariadb-server redis-server.
set -u

wait_for() { # name, check command
  for _ in $(seq 1 60); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "services: $1 did not come up" >&2
  return 1
}

if ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
wait_for PostgreSQL "pg_isready -h 127.0.0.1 -q"

if ! mariadb-admin -h 127.0.0.1 -uroot ping >/dev/null 2>&1; then
  echo "services: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
wait_for MariaDB "mariadb-admin -h 127.0.0.1 -uroot ping"
# Tests create a database and its tables per test; on this throwaway test server, trade crash
# durability for DDL speed (one shared tablespace, log flushed once a second): ~45% faster.
mariadb -h 127.0.0.1 -uroot -e "SET GLOBAL innodb_file_per_table=OFF; SET GLOBAL innodb_flush_log_at_trx_commit=2" 2>/dev/null || true

if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
wait_for Redis "redis-cli -h 127.0.0.1 ping"

# The event relay tests (tests/api/events_relay.rs) publish to both brokers; SCRM_NEED_BROKERS=0
# skips them on a machine that runs none of those tests.
if [ "${SCRM_NEED_BROKERS:-1}" = 1 ]; then
  if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    echo "services: starting RabbitMQ"
    rabbitmq-server -detached || true
  fi
  wait_for RabbitMQ "(exec 3<>/dev/tcp/127.0.0.1/5672)"
  if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
    echo "services: starting NATS"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
  fi
  wait_for NATS "(exec 3<>/dev/tcp/127.0.0.1/4222)"
fi

# Drop databases left by earlier test runs (tests create scrm_t_* databases and cannot drop
# their own).
for db in $(psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'scrm\_t\_%'" 2>/dev/null); do
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
done
for db in $(mariadb -h 127.0.0.1 -uroot -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'scrm\_t\_%'" 2>/dev/null); do
  mariadb -h 127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS \`$db\`" >/dev/null 2>&1 || true
done
rm -rf "${TMPDIR:-/tmp}/scrm-tests"
exit 0
