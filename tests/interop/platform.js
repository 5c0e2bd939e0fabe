// A stand-in for the platform's Express back end, for tests/test_platform_interop.py:
// express-session with connect-redis (redis) or connect-pg-simple (pg), passport with a
// local strategy. Nothing here is ours: customers sign in the way the platform does, and
// the service under test reads the sessions this app writes.
//
// Settings (environment):
//   STORE             "redis" or "pg"
//   REDIS_URL, REDIS_PREFIX               connect-redis: client URL, key prefix
//   PG_URL, PG_SCHEMA, PG_TABLE           connect-pg-simple: pool URL, schemaName, tableName
//   SECRETS           comma-separated express-session secrets (the first signs)
//   COOKIE_NAME       express-session's name (default connect.sid)
//   STORE_TTL_S       the store's lifetime of a session whose cookie has no expiry
//   USERS             JSON [{id, username, password}]: ids may be strings or numbers
//   AFTER_LOGIN       where a browser's form sign-in is sent on success
//   PORT              where to listen on 127.0.0.1 (default: any free port)
// Prints {"port": N} on one stdout line once it listens.
//
// Routes:
//   GET  /login       a sign-in form (username, password)
//   POST /login       JSON or form: passport's local strategy, then req.login.
//                     JSON may add maxAgeMs (a shorter cookie) or browserSession: true
//                     (a cookie without expiry: the store's TTL alone ends it).
//   POST /logout      req.logout: passport regenerates the session, destroying the old one
//   POST /anonymous   a session that carries no user
'use strict';

const express = require('express');
const session = require('express-session');
const passport = require('passport');
const { Strategy: LocalStrategy } = require('passport-local');

const env = process.env;
const users = JSON.parse(env.USERS || '[]');
const storeTtl = Number(env.STORE_TTL_S || 86400);

function makeStore() {
  if (env.STORE === 'redis') {
    const { RedisStore } = require('connect-redis');
    const { createClient } = require('redis');
    const client = createClient({ url: env.REDIS_URL });
    client.on('error', (err) => console.error('redis:', err.message));
    return {
      ready: client.connect(),
      store: new RedisStore({ client, prefix: env.REDIS_PREFIX, ttl: storeTtl }),
    };
  }
  if (env.STORE === 'pg') {
    const pg = require('pg');
    const PgStore = require('connect-pg-simple')(session);
    const pool = new pg.Pool({ connectionString: env.PG_URL });
    return {
      ready: Promise.resolve(),
      store: new PgStore({
        pool,
        schemaName: env.PG_SCHEMA,
        tableName: env.PG_TABLE,
        createTableIfMissing: true,
        ttl: storeTtl,
        pruneSessionInterval: false,
      }),
    };
  }
  throw new Error('STORE must be redis or pg');
}

passport.use(
  new LocalStrategy((username, password, done) => {
    const user = users.find((u) => u.username === username && u.password === password);
    done(null, user || false);
  }),
);
passport.serializeUser((user, done) => done(null, user.id));
passport.deserializeUser((id, done) => done(null, users.find((u) => u.id === id) || false));

const { ready, store } = makeStore();
const app = express();
app.use(express.json());
app.use(express.urlencoded({ extended: false }));
app.use(
  session({
    store,
    name: env.COOKIE_NAME || 'connect.sid',
    secret: env.SECRETS.split(','),
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, sameSite: 'lax', maxAge: 3600 * 1000 },
  }),
);
app.use(passport.session());

const wantsJson = (req) => req.is('application/json');

app.get('/login', (req, res) => {
  res.type('html').send(
    '<!doctype html><title>Platform sign-in</title><form method="post" action="/login">' +
      '<label>Username <input name="username"></label>' +
      '<label>Password <input name="password" type="password"></label>' +
      '<button type="submit">Sign in</button></form>',
  );
});

app.post('/login', (req, res, next) => {
  passport.authenticate('local', (err, user) => {
    if (err) return next(err);
    if (!user) return res.status(401).json({ error: 'invalid_credentials' });
    req.login(user, (loginErr) => {
      if (loginErr) return next(loginErr);
      if (req.body.browserSession) req.session.cookie.maxAge = null;
      else if (req.body.maxAgeMs) req.session.cookie.maxAge = Number(req.body.maxAgeMs);
      if (wantsJson(req)) return res.json({ user: user.id });
      return res.redirect(303, env.AFTER_LOGIN || '/');
    });
  })(req, res, next);
});

app.post('/logout', (req, res, next) => {
  req.logout((err) => (err ? next(err) : res.json({ ok: true })));
});

app.post('/anonymous', (req, res) => {
  req.session.visits = (req.session.visits || 0) + 1;
  res.json({ ok: true });
});

ready
  .then(() => {
    const server = app.listen(Number(env.PORT || 0), '127.0.0.1', () => {
      process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
    });
    const stop = () => server.close(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
