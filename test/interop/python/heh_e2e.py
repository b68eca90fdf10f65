"""An independent Python implementation of the HEH-E2E v1 envelope, for interop tests only (never shipped, never
used by the hub). test/interop/python-envelope.test.ts drives it against the project's Sealer in both directions.

Where it came from: written on 2026-12-04 by an implementer outside the project's code, to check that the envelope
can be built again from its description. Its own notes name its sources, which are more than docs/crypto.md:
  - the envelope, pair key and signature: docs/crypto.md and §6 of crypto.md in the project's shared/docs/ (the
    eBADGE reference notes; docs/crypto.md alone gives neither the field sizes, the key ids, the signature's domain
    tag nor the HKDF info);
  - the message type codes: the project's exported typeCode(), used as a black box (no document lists them);
  - the topic id of a SIGNED envelope: a guess that matched (no document derives it);
  - GROUP (the group key id): read from src/crypto/keyring.ts (undocumented).
So PAIR and SIGNED are independent of src/crypto; the type codes, the topic id and GROUP are not.

Changed when it was copied in (2026-12-04): its scratch code went (hostile-variant knobs), GROUP moved into open and
the CLI, the self-test reads the vectors from this repository, `open` prints seq and ts as decimal strings and the
payload as hex too (JavaScript reads them exactly), refusals exit 2 with their code, and the CLI gained --sign-key
and --flip to craft hostile envelopes. The cryptography is as written.

Needs Python 3 and the `cryptography` package (pip install cryptography). Run:
  python3 test/interop/python/heh_e2e.py selftest     (draft-irtf-cfrg-xchacha-03 vectors, test/vectors/crypto/xchacha.json)
  python3 heh_e2e.py seal   --key A.key --keyring A.keyring.json --to PEER --type TYPE [--seq N] [--ts MS] < payload > body
  python3 heh_e2e.py signed --key A.key --topic TOPIC --type TYPE [--seq N] [--ts MS] < payload > body
  python3 heh_e2e.py group  --key A.key --topic TOPIC --type TYPE [--seq N] [--ts MS] < payload > body
  python3 heh_e2e.py open   --key B.key --keyring B.keyring.json < body
      prints JSON {sender, type, mode, topic, seq, ts, payload, payload_hex}; a refusal prints {"error": CODE}, exit 2
Hostile options of seal/signed/group: --sign-key OTHER.key signs with another identity's Ed25519 key (the header still
names A's key); --flip N flips the low bit of byte N of the finished body (negative N counts from the end).
The whole interop test: npx tsc -p tsconfig.json && node .out/test/run.js .out/test/interop 'python-envelope'
"""
import base64, hashlib, json, os, struct, sys, time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.exceptions import InvalidSignature, InvalidTag

VERSION = 1
MODE_PAIR, MODE_GROUP, MODE_SIGNED = 1, 2, 3
MODE_NAME = {MODE_PAIR: 'pair', MODE_GROUP: 'group', MODE_SIGNED: 'signed'}
HEADER = 60
SIG_DOMAIN = b"HEH-E2E/v1/sig\x00"
SALT = b"HEH-E2E/v1"

# Type codes: NOT in either crypto doc; learnt from the project's exported typeCode() (black box).
TYPES = ['get_report', 'get_periodic_report', 'report', 'get_energy_events', 'get_energy_events_realtime',
         'energy_events', 'activate', 'accept_activation', 'reject_activation', 'modify_activation',
         'get_activation_capacity', 'activation_capacity', 'contingency_activate', 'contingency_end', 'load_price',
         'generation_price', 'get_all_prices', 'get_status_report', 'status_report', 'set_clock', 'set_smart_mode',
         'get_capabilities', 'capabilities', 'device_capabilities', 'response', 'availability',
         'ext_si_xlab_led_signal', 'balancing_reserve_bid', 'bid_accepted', 'market_cleared',
         'balancing_energy_bid', 'activate_bid', 'request_balancing', 'balancing_activated',
         'balancing_unachievable', 'get_load_report', 'load_report']
TYPE_CODE = {t: i + 1 for i, t in enumerate(TYPES)}
TYPE_CODE['key_update'] = 0xFF00
TYPE_NAME = {v: k for k, v in TYPE_CODE.items()}


def b64d(s):
    return base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))


# ---------------------------------------------------------------- XChaCha20-Poly1305
def _hchacha20_raw(key, nonce16):
    """HChaCha20 from one raw ChaCha20 block: keystream block 0 = rounds(S) + S; subtract S words 0-3, 12-15."""
    ks = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor().update(b"\x00" * 64)
    w = struct.unpack("<16I", ks)
    const = (0x61707865, 0x3320646e, 0x79622d32, 0x6b206574)
    n = struct.unpack("<4I", nonce16)
    out = [(w[i] - const[i]) & 0xffffffff for i in range(4)] + [(w[12 + i] - n[i]) & 0xffffffff for i in range(4)]
    return struct.pack("<8I", *out)


def _rotl(v, c):
    return ((v << c) & 0xffffffff) | (v >> (32 - c))


def _hchacha20_pure(key, nonce16):
    """HChaCha20 in plain Python: only the self-test uses it, to check _hchacha20_raw."""
    s = list((0x61707865, 0x3320646e, 0x79622d32, 0x6b206574)) + list(struct.unpack("<8I", key)) + \
        list(struct.unpack("<4I", nonce16))

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = _rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = _rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xffffffff; s[d] = _rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xffffffff; s[b] = _rotl(s[b] ^ s[c], 7)
    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


hchacha20 = _hchacha20_raw


def xchacha_encrypt(key, nonce24, pt, aad):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\x00" * 4 + nonce24[16:], pt, aad)


def xchacha_decrypt(key, nonce24, ct, aad):
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).decrypt(b"\x00" * 4 + nonce24[16:], ct, aad)


# ---------------------------------------------------------------- keys
def kid(xpub):
    return hashlib.sha256(xpub).digest()[:8]


def topic_id(topic):
    # GUESS: the docs never say how a "topic id" is derived
    return hashlib.sha256(b"HEH-E2E/v1/topic\x00" + topic.encode()).digest()[:8]  # found by guessing


# GROUP: learnt from src/crypto/keyring.ts (undocumented)
def group_kid(key):
    return hashlib.sha256(b"HEH-E2E/v1/group\x00" + key).digest()[:8]


class Identity:
    def __init__(self, path):
        with open(path) as f:
            d = json.load(f)
        assert d.get('format') == 'heh-private/1', d.get('format')
        self.id = d['id']
        self.seed = b64d(d['ed25519'])
        self.ed = Ed25519PrivateKey.from_private_bytes(self.seed)
        self.ed_pub = self.ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.x = []
        for e in d['x25519']:
            sk = X25519PrivateKey.from_private_bytes(b64d(e['secret']))
            pub = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self.x.append(dict(sk=sk, pub=pub, kid=kid(pub), notBefore=e.get('notBefore'), notAfter=e.get('notAfter')))
        # topic -> [group key], oldest first
        self.groups = {t: [b64d(e['key']) for e in l] for t, l in d.get('groups', {}).items()}

    def sealing_key(self):
        return self.x[0]  # oldest in force (only one in our tests)


class Peer:
    def __init__(self, name, e):
        self.id = name
        self.ed_pub = b64d(e['ed25519'])
        self.ed = Ed25519PublicKey.from_public_bytes(self.ed_pub)
        self.x = [dict(pub=b64d(k['pub']), kid=kid(b64d(k['pub'])), notBefore=k.get('notBefore')) for k in e['x25519']]
        self.maySend = set(e.get('maySend', []))
        self.topics = e.get('topics', [])


def load_keyring(path):
    with open(path) as f:
        d = json.load(f)
    assert d['format'] == 'heh-keyring/1'
    return {n: Peer(n, e) for n, e in d['peers'].items()}


def pair_key(sender_ed_pub, x_sk, x_pub_sender, x_pub_recipient):
    ikm = x_sk.exchange(X25519PublicKey.from_public_bytes(x_pub_recipient))
    return HKDF(hashes.SHA256(), 32, SALT, b"pair\x00" + sender_ed_pub + x_pub_sender + x_pub_recipient).derive(ikm)


def pair_key_recv(my_sk, my_pub, sender_ed_pub, sender_xpub):
    ikm = my_sk.exchange(X25519PublicKey.from_public_bytes(sender_xpub))
    return HKDF(hashes.SHA256(), 32, SALT, b"pair\x00" + sender_ed_pub + sender_xpub + my_pub).derive(ikm)


# ---------------------------------------------------------------- envelope
def header(mode, tcode, skid, rkid, ts, seq, nonce, version=VERSION):
    return struct.pack(">BBH8s8sQQ24s", version, mode, tcode, skid, rkid, ts, seq, nonce)


def parse_header(h):
    v, mode, t, skid, rkid, ts, seq, nonce = struct.unpack(">BBH8s8sQQ24s", h[:HEADER])
    return dict(version=v, mode=mode, type=t, skid=skid, rkid=rkid, ts=ts, seq=seq, nonce=nonce)


def sign(signer, hdr, payload):
    """signer: the Identity whose Ed25519 key signs (the sender's own, unless a test forges)."""
    return signer.ed.sign(SIG_DOMAIN + hdr + payload)


def _now_ms(ts):
    return int(time.time() * 1000) if ts is None else ts


def seal_pair(me, peer, typ, payload, seq, ts=None, nonce=None, *, signer=None):
    mine = me.sealing_key()
    theirs = peer.x[-1]
    nonce = os.urandom(24) if nonce is None else nonce
    hdr = header(MODE_PAIR, TYPE_CODE[typ], mine['kid'], theirs['kid'], _now_ms(ts), seq, nonce)
    k = pair_key(me.ed_pub, mine['sk'], mine['pub'], theirs['pub'])
    return hdr + xchacha_encrypt(k, nonce, sign(signer or me, hdr, payload) + payload, hdr)


def seal_signed(me, topic, typ, payload, seq, ts=None, *, signer=None):
    mine = me.sealing_key()
    hdr = header(MODE_SIGNED, TYPE_CODE[typ], mine['kid'], topic_id(topic), _now_ms(ts), seq, b"\x00" * 24)
    return hdr + payload + sign(signer or me, hdr, payload)


def seal_group(me, gkey, typ, payload, seq, ts=None, nonce=None, *, signer=None):
    mine = me.sealing_key()
    nonce = os.urandom(24) if nonce is None else nonce
    hdr = header(MODE_GROUP, TYPE_CODE[typ], mine['kid'], group_kid(gkey), _now_ms(ts), seq, nonce)
    return hdr + xchacha_encrypt(gkey, nonce, sign(signer or me, hdr, payload) + payload, hdr)


class OpenError(Exception):
    pass


def open_body(me, peers, body):
    if len(body) < HEADER + 64:
        raise OpenError('TOO_SHORT')
    h = parse_header(body)
    hdr = body[:HEADER]
    if h['version'] != 1:
        raise OpenError('VERSION')
    sender = next((p for p in peers.values() for k in p.x if k['kid'] == h['skid']), None)
    if sender is None:
        raise OpenError('UNKNOWN_SENDER')
    sxpub = next(k['pub'] for k in sender.x if k['kid'] == h['skid'])
    topic = None
    if h['mode'] in (MODE_PAIR, MODE_GROUP):
        if h['mode'] == MODE_PAIR:
            mine = next((k for k in me.x if k['kid'] == h['rkid']), None)
            if mine is None:
                raise OpenError('NOT_FOR_US')
            k = pair_key_recv(mine['sk'], mine['pub'], sender.ed_pub, sxpub)
        else:
            found = [(t, g) for t, keys in me.groups.items() for g in keys if group_kid(g) == h['rkid']]
            if not found:
                raise OpenError('NOT_FOR_US')
            topic, k = found[0]
        try:
            pt = xchacha_decrypt(k, h['nonce'], body[HEADER:], hdr)
        except InvalidTag:
            raise OpenError('DECRYPT_FAILED')
        if len(pt) < 64:
            raise OpenError('TOO_SHORT')
        sig, payload = pt[:64], pt[64:]
    elif h['mode'] == MODE_SIGNED:
        topic = next((t for t in sender.topics if topic_id(t) == h['rkid']), None)
        if topic is None:
            raise OpenError('NOT_FOR_US')
        payload, sig = body[HEADER:-64], body[-64:]
    else:
        raise OpenError('MODE')
    try:
        sender.ed.verify(sig, SIG_DOMAIN + hdr + payload)
    except InvalidSignature:
        raise OpenError('BAD_SIGNATURE')
    return dict(sender=sender.id, type=TYPE_NAME.get(h['type'], h['type']), mode=MODE_NAME[h['mode']], topic=topic,
                seq=str(h['seq']), ts=str(h['ts']), payload=payload.decode('utf-8', 'replace'), payload_hex=payload.hex())


# ---------------------------------------------------------------- self test
VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'vectors', 'crypto', 'xchacha.json')


def selftest():
    with open(VECTORS) as f:
        v = json.load(f)
    n = 0
    for t in v['vectors']:
        if t['type'] == 'hchacha20':
            for f in (_hchacha20_raw, _hchacha20_pure):
                assert f(bytes.fromhex(t['key']), bytes.fromhex(t['nonce'])).hex() == t['subkey'], (t['name'], f)
                n += 1
        elif t['type'] == 'aead':
            key, nonce, aad, pt = (bytes.fromhex(t[k]) for k in ('key', 'nonce', 'aad', 'plaintext'))
            ct = xchacha_encrypt(key, nonce, pt, aad)
            exp = bytes.fromhex(t['ciphertext']) + (bytes.fromhex(t['tag']) if 'tag' in t else b'')
            assert ct == exp, (t['name'], ct.hex(), exp.hex())
            assert xchacha_decrypt(key, nonce, ct, aad) == pt
            n += 1
        else:
            raise AssertionError('unknown vector type %s' % t['type'])
    assert n == 3, '%d vector checks, expected 3' % n
    # random cross-check raw vs pure HChaCha
    for _ in range(200):
        k, nn = os.urandom(32), os.urandom(16)
        assert _hchacha20_raw(k, nn) == _hchacha20_pure(k, nn)
    print('selftest ok:', n, 'vectors + 200 random hchacha raw/pure')


# ---------------------------------------------------------------- CLI
def _args(argv):
    a = {}
    i = 0
    while i < len(argv):
        a[argv[i].lstrip('-')] = argv[i + 1]
        i += 2
    return a


def _flip(body, at):
    b = bytearray(body)
    b[at] ^= 1
    return bytes(b)


def main():
    cmd = sys.argv[1]
    if cmd == 'selftest':
        selftest()
        return 0
    a = _args(sys.argv[2:])
    me = Identity(a['key'])
    if cmd == 'open':
        try:
            print(json.dumps(open_body(me, load_keyring(a['keyring']), sys.stdin.buffer.read())))
        except OpenError as e:
            print(json.dumps({'error': str(e)}))
            return 2
        return 0
    payload = sys.stdin.buffer.read()
    seq = int(a.get('seq', time.time_ns() // 1000))
    ts = int(a['ts']) if 'ts' in a else None
    signer = Identity(a['sign-key']) if 'sign-key' in a else None
    if cmd == 'seal':
        body = seal_pair(me, load_keyring(a['keyring'])[a['to']], a['type'], payload, seq, ts, signer=signer)
    elif cmd == 'signed':
        body = seal_signed(me, a['topic'], a['type'], payload, seq, ts, signer=signer)
    elif cmd == 'group':
        body = seal_group(me, me.groups[a['topic']][-1], a['type'], payload, seq, ts, signer=signer)
    else:
        raise SystemExit('unknown command %r' % cmd)
    if 'flip' in a:
        body = _flip(body, int(a['flip']))
    sys.stdout.buffer.write(body)
    return 0


if __name__ == '__main__':
    sys.exit(main())
