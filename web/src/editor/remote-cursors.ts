/**
 * Other people's cursors and selections in CodeMirror, from Yjs awareness, drawn with classes
 * only (a fixed palette in an editor theme), so the page keeps a CSP without inline styles.
 * y-codemirror.next's own `yRemoteSelections` writes `style` attributes, which such a CSP
 * blocks; this plugin uses the same awareness fields (`user: {name, color}`, `cursor: {anchor,
 * head}` as Yjs relative positions), so both kinds of editors see each other.
 */
import { Annotation, type Extension } from '@codemirror/state';
import { Decoration, EditorView, ViewPlugin, WidgetType, type DecorationSet, type ViewUpdate } from '@codemirror/view';
import type { Awareness } from 'y-protocols/awareness';
import * as Y from 'yjs';

/** Cursor colours: [caret and name tag, selection background]. A user's colour is one of these. */
export const PALETTE: ReadonlyArray<readonly [string, string]> = [
  ['#4f5bd5', '#4f5bd533'],
  ['#1f9d55', '#1f9d5533'],
  ['#d64545', '#d6454533'],
  ['#c98a04', '#c98a0433'],
  ['#0e8fb3', '#0e8fb333'],
  ['#9c4dcc', '#9c4dcc33'],
];

/** A palette slot per user id, stable across reloads. */
export function paletteSlot(user: string): number {
  let hash = 0;
  for (const ch of user) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return hash % PALETTE.length;
}

/** The slot of a colour some client announced (its own palette may differ: then by client id). */
function slotOf(color: unknown, clientId: number): number {
  const index = PALETTE.findIndex(([c]) => c === color);
  return index >= 0 ? index : clientId % PALETTE.length;
}

const remoteChange = Annotation.define<true>();

class CaretWidget extends WidgetType {
  constructor(
    readonly slot: number,
    readonly name: string,
  ) {
    super();
  }

  override eq(other: CaretWidget): boolean {
    return other.slot === this.slot && other.name === this.name;
  }

  toDOM(): HTMLElement {
    const caret = document.createElement('span');
    caret.className = `cm-peer-caret cm-peer-${this.slot}`;
    const tag = document.createElement('span');
    tag.className = 'cm-peer-name';
    tag.textContent = this.name;
    caret.append(tag);
    return caret;
  }

  override ignoreEvent(): boolean {
    return true;
  }
}

interface CursorState {
  user?: { name?: unknown; color?: unknown };
  cursor?: { anchor?: unknown; head?: unknown } | null;
}

const theme = EditorView.theme({
  '.cm-peer-caret': { position: 'relative', borderLeft: '2px solid', marginLeft: '-1px', marginRight: '-1px' },
  '.cm-peer-name': {
    position: 'absolute', top: '-1.35em', left: '-2px', fontSize: '0.72em', lineHeight: '1.3', padding: '0 4px',
    borderRadius: '3px 3px 3px 0', color: '#fff', whiteSpace: 'nowrap', userSelect: 'none', pointerEvents: 'none',
  },
  ...Object.fromEntries(
    PALETTE.flatMap(([color, light], i) => [
      [`.cm-peer-caret.cm-peer-${i}`, { borderColor: color }],
      [`.cm-peer-${i} .cm-peer-name`, { backgroundColor: color }],
      [`.cm-peer-selection.cm-peer-${i}`, { backgroundColor: light }],
    ]),
  ),
});

/** The extension: publishes the local selection to awareness and draws everyone else's. */
export function remoteCursors(ytext: Y.Text, awareness: Awareness): Extension {
  const doc = ytext.doc as Y.Doc;
  const toIndex = (json: unknown): number | undefined => {
    if (json === null || typeof json !== 'object') return undefined;
    const pos = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(json), doc);
    return pos && pos.type === ytext ? pos.index : undefined;
  };

  const plugin = ViewPlugin.fromClass(
    class {
      decorations: DecorationSet = Decoration.none;
      readonly #listener: (change: { added: number[]; updated: number[]; removed: number[] }) => void;

      constructor(readonly view: EditorView) {
        this.#listener = ({ added, updated, removed }) => {
          // Our own state changes come from update() below: redrawing for them would re-enter it.
          if ([...added, ...updated, ...removed].some((id) => id !== awareness.clientID)) {
            view.dispatch({ annotations: remoteChange.of(true) });
          }
        };
        awareness.on('change', this.#listener);
        this.decorations = this.#build(view);
      }

      update(update: ViewUpdate): void {
        this.#publishLocal(update.view);
        if (update.docChanged || update.transactions.some((tr) => tr.annotation(remoteChange))) {
          this.decorations = this.#build(update.view);
        }
      }

      destroy(): void {
        awareness.off('change', this.#listener);
        awareness.setLocalStateField('cursor', null);
      }

      #publishLocal(view: EditorView): void {
        const local = awareness.getLocalState() as CursorState | null;
        if (local === null) return;
        if (!view.hasFocus) return;
        const sel = view.state.selection.main;
        const anchor = Y.createRelativePositionFromTypeIndex(ytext, sel.anchor);
        const head = Y.createRelativePositionFromTypeIndex(ytext, sel.head);
        const current = local.cursor;
        if (
          current?.anchor &&
          current.head &&
          Y.compareRelativePositions(Y.createRelativePositionFromJSON(current.anchor), anchor) &&
          Y.compareRelativePositions(Y.createRelativePositionFromJSON(current.head), head)
        ) {
          return;
        }
        awareness.setLocalStateField('cursor', { anchor: Y.relativePositionToJSON(anchor), head: Y.relativePositionToJSON(head) });
      }

      #build(view: EditorView): DecorationSet {
        const length = view.state.doc.length;
        const ranges = [];
        for (const [clientId, raw] of awareness.getStates()) {
          if (clientId === awareness.clientID) continue;
          const state = raw as CursorState;
          const anchor = toIndex(state.cursor?.anchor);
          const head = toIndex(state.cursor?.head);
          if (anchor === undefined || head === undefined) continue;
          const slot = slotOf(state.user?.color, clientId);
          const name = typeof state.user?.name === 'string' ? state.user.name : `client ${clientId}`;
          const from = Math.min(anchor, head, length);
          const to = Math.min(Math.max(anchor, head), length);
          if (from < to) ranges.push(Decoration.mark({ class: `cm-peer-selection cm-peer-${slot}` }).range(from, to));
          ranges.push(Decoration.widget({ widget: new CaretWidget(slot, name), side: head > anchor ? -1 : 1 }).range(Math.min(head, length)));
        }
        return Decoration.set(ranges, true);
      }
    },
    { decorations: (v) => v.decorations },
  );
  return [plugin, theme];
}
