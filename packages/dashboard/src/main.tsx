/** Entry point: the store and the app. */
import { render } from 'preact';
import { App } from './app.js';
import { createStore } from './live.js';
import './styles.css';

const root = document.getElementById('app');
if (root) render(<App store={createStore()} />, root);
